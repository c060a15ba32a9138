// Package yamlconfig decodes configuration files strictly: one YAML document, no unknown
// keys, no values of the wrong type, every problem reported with its line. Each server
// keeps its own Config type and validation; they share this package's Error (every
// problem, named by file and kind), loaders, key listing for doc tests, and the log
// section's check.
package yamlconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Decode decodes one YAML document from r into v, which must be a pointer. Unknown keys,
// values of the wrong type and a second document are problems, each naming its line;
// Decode returns all it finds, or nil when the document decoded. An empty document is not
// a problem and leaves v as it was. After problems v may be partly filled: discard it.
func Decode(r io.Reader, v any) []string {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return te.Errors
		}
		return []string{err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return []string{fmt.Sprintf("line %d: a second YAML document; the config is one document", extra.Line)}
	}
	return nil
}

// Load reads the file at path and decodes it into v with Decode. err is the error of
// os.ReadFile, unwrapped, when the file cannot be read; problems are Decode's.
func Load(path string, v any) (problems []string, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(bytes.NewReader(raw), v), nil
}
