package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// yamlTree parses data with yaml.v3, the reference jsonTree must equal.
func yamlTree(t testing.TB, data []byte) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Skipf("yaml.v3 refuses this valid JSON (%v); jsonTree is only used where yaml.v3 would parse", err)
	}
	if len(doc.Content) != 1 {
		t.Fatalf("yaml.v3: %d documents", len(doc.Content))
	}
	return doc.Content[0]
}

// sameTree reports the first difference between two trees, "" when they agree on what
// the decoder reads: kind, tag, value, line, column and children.
func sameTree(a, b *yaml.Node, path string) string {
	if a.Kind != b.Kind || a.ShortTag() != b.ShortTag() || a.Value != b.Value || a.Line != b.Line || a.Column != b.Column {
		return fmt.Sprintf("%s: fast {kind %d tag %s value %q at %d:%d}, yaml.v3 {kind %d tag %s value %q at %d:%d}",
			path, a.Kind, a.ShortTag(), a.Value, a.Line, a.Column, b.Kind, b.ShortTag(), b.Value, b.Line, b.Column)
	}
	if len(a.Content) != len(b.Content) {
		return fmt.Sprintf("%s: %d children, yaml.v3 %d", path, len(a.Content), len(b.Content))
	}
	for i := range a.Content {
		if d := sameTree(a.Content[i], b.Content[i], fmt.Sprintf("%s/%d", path, i)); d != "" {
			return d
		}
	}
	return ""
}

func TestJSONTreeMatchesYAML(t *testing.T) {
	inputs := map[string][]byte{
		"scalars":          []byte(`{"s":"x","i":12,"n":-3,"f":1.5,"e":1e9,"big":123456789012345678901234567890,"t":true,"F":false,"z":null}`),
		"escapes":          []byte(`{"a\"b":"\u00e9\n\t\\","u":"日本語","after":"x"}`),
		"nesting and crlf": []byte("{\r\n  \"a\": [1, [2, {}], []],\r\n\t\"b\": {\"c\": {}}\r\n}\r\n"),
		"lone cr":          []byte("{\"a\":\r1}"),
		"unicode columns":  []byte(`{"ключ":"значение","k":1}`),
		"top-level array":  []byte(` [ "a" , 2 ] `),
	}
	files, _ := filepath.Glob("testdata/domains/*.json")
	more, _ := filepath.Glob("testdata/load/*/*.json")
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if json.Valid(data) {
			inputs[f] = data
		}
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			fast, err := jsonTree(data)
			if err != nil {
				t.Fatalf("jsonTree: %v", err)
			}
			if d := sameTree(fast, yamlTree(t, data), ""); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func FuzzJSONTree(f *testing.F) {
	f.Add([]byte(`{"name":"a","roles":[{"name":"a:role.r","roleMembers":[{"memberName":"x.y"}]}]}`))
	f.Add([]byte("[1,2.5,\"\\u0041\",null,true]"))
	f.Add([]byte("{\"k\":\r\n\"v\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || bytes.ContainsAny(data, "\x00") || strings.Contains(string(data), "\ufeff") {
			return
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) != 1 {
			return // not input the loader would take this path for
		}
		fast, err := jsonTree(data)
		if err != nil {
			t.Fatalf("jsonTree refused valid JSON %q: %v", data, err)
		}
		if d := sameTree(fast, doc.Content[0], ""); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}
