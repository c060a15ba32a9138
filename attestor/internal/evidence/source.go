// Package evidence holds what the attestor collectors share: reading a token from a file
// or an environment variable, and discarding a spent one.
package evidence

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// whiteSpaceSlack is how much white space around a token Read tolerates in a file.
const whiteSpaceSlack = 1024

// Source is where a collector finds a token: exactly one of File and Env.
type Source struct {
	// File is the path of a file holding the token; surrounding white space is ignored.
	File string
	// Env is the name of an environment variable holding the token.
	Env string
	// AfterUse says what Discard does with File; it must be empty or AfterUseKeep for Env.
	AfterUse attestor.AfterUse
	// MaxLen bounds the token, in bytes.
	MaxLen int
}

// Validate reports a configuration error, naming the token kind what.
func (s Source) Validate(what string) error {
	switch {
	case (s.File == "") == (s.Env == ""):
		return fmt.Errorf("%s: set exactly one of the token file and the environment variable", what)
	case !s.AfterUse.Valid():
		return fmt.Errorf("%s: after use %q: want %q, %q or %q", what, s.AfterUse, attestor.AfterUseKeep, attestor.AfterUseRemove, attestor.AfterUseTruncate)
	case s.Env != "" && s.AfterUse != "" && s.AfterUse != attestor.AfterUseKeep:
		return fmt.Errorf("%s: after use %q applies to token files only; an environment variable cannot be erased from the process's initial environment", what, s.AfterUse)
	}
	return nil
}

// Read returns the token, trimmed of white space. An unset variable, a missing, empty or
// oversized file are errors naming the source, never quoting the token.
func (s Source) Read(what string) (string, error) {
	var v string
	if s.Env != "" {
		var ok bool
		if v, ok = os.LookupEnv(s.Env); !ok {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, s.Env)
		}
	} else {
		f, err := os.Open(s.File)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		// Read a little more than MaxLen, so that white space around a token of the
		// maximum length is trimmed rather than counted; the length is checked after.
		b, err := io.ReadAll(io.LimitReader(f, int64(s.MaxLen)+whiteSpaceSlack+1))
		if err != nil {
			return "", fmt.Errorf("%s: read %s: %w", what, s.File, err)
		}
		if len(b) > s.MaxLen+whiteSpaceSlack {
			return "", fmt.Errorf("%s: %s is larger than %d bytes", what, s.File, s.MaxLen+whiteSpaceSlack)
		}
		v = string(b)
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", fmt.Errorf("%s: %s is empty", what, s.name())
	case len(v) > s.MaxLen:
		return "", fmt.Errorf("%s: %s holds more than %d bytes", what, s.name(), s.MaxLen)
	}
	return v, nil
}

func (s Source) name() string {
	if s.Env != "" {
		return "environment variable " + s.Env
	}
	return s.File
}

// Discard applies AfterUse to File. Removing a file that is already gone is not an error.
func (s Source) Discard() error {
	switch s.AfterUse {
	case attestor.AfterUseRemove:
		if err := os.Remove(s.File); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	case attestor.AfterUseTruncate:
		return os.Truncate(s.File, 0)
	}
	return nil
}
