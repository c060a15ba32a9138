package yamlconfig

import (
	"fmt"
	"io"
	"strings"
)

// Error is an invalid configuration: every problem found, decoding or validating. The
// issuer, authz and agent configs report theirs with it (each package names it as its
// own ConfigError), so that the binary prints all of them alike.
type Error struct {
	// Kind names the configuration: "issuer", "authz", "agent".
	Kind string
	// File is the configuration file, when known.
	File string
	// Problems are the problems, one sentence each, naming the line or the field.
	Problems []string
}

// Error names the file and lists the problems, one per line when there are several.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Kind != "" {
		b.WriteString("invalid " + e.Kind + " config")
	} else {
		b.WriteString("invalid config")
	}
	if len(e.Problems) == 1 {
		return b.String() + ": " + e.Problems[0]
	}
	fmt.Fprintf(&b, ", %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p)
	}
	return b.String()
}

// LoadFile reads the file at path and decodes it strictly into a new T (see Decode). An
// unreadable file is an error naming the kind; problems are an *Error naming the file.
// It does not validate: callers apply flag overrides first.
func LoadFile[T any](path, kind string) (T, error) {
	var v T
	problems, err := Load(path, &v)
	if err != nil {
		return v, fmt.Errorf("read %s config: %w", kind, err)
	}
	if problems != nil {
		var zero T
		return zero, &Error{Kind: kind, File: path, Problems: problems}
	}
	return v, nil
}

// DecodeReader decodes one YAML document from r strictly into a new T; problems are an
// *Error. An empty document is the zero T.
func DecodeReader[T any](r io.Reader, kind string) (T, error) {
	var v T
	if problems := Decode(r, &v); problems != nil {
		var zero T
		return zero, &Error{Kind: kind, Problems: problems}
	}
	return v, nil
}

// CheckLog returns the problems of a log section: level debug, info, warn (warning) or
// error, and format json or text, either empty for the default.
func CheckLog(level, format string) []string {
	var problems []string
	switch strings.ToLower(level) {
	case "", "debug", "info", "warn", "warning", "error":
	default:
		problems = append(problems, fmt.Sprintf("log.level %q: want debug, info, warn or error", level))
	}
	switch format {
	case "", "json", "text":
	default:
		problems = append(problems, fmt.Sprintf("log.format %q: want json or text", format))
	}
	return problems
}
