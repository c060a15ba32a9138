package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseDomain feeds arbitrary bytes to ParseDomain. It must never panic; it fails
// only with a *LoadError holding at least one problem; and any domain it returns
// re-validates cleanly and survives a round trip through its JSON form unchanged.
func FuzzParseDomain(f *testing.F) {
	for _, pattern := range []string{"testdata/domains/*", "testdata/load/forms/*", "testdata/load/bad/*/*"} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte(`{"name": "a", "roles": [{"name": "a:role.r", "members": ["*"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDomain("fuzz.yaml", data)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty *LoadError", err, err)
			}
			return
		}
		if err := ValidateDomain(d); err != nil {
			t.Fatalf("returned domain does not re-validate: %v", err)
		}
		first, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseDomain("fuzz.json", first)
		if err != nil {
			t.Fatalf("JSON form %s does not load: %v", first, err)
		}
		second, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(first) != string(second) {
			t.Fatalf("round trip changed the domain:\n %s\n %s", first, second)
		}
	})
}
