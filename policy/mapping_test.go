package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// mappingFile is one file of testdata/mapping: a Mapping (in its bundle JSON form) and
// Envoy requests with the Athenz request each maps to, or the reason it does not. The Go
// mapping (TestMappingCases) and the bundle's Rego (TestRegoMappingCases) run the same files.
type mappingFile struct {
	Mapping *Mapping      `json:"mapping"`
	Cases   []mappingCase `json:"cases"`
}

type mappingCase struct {
	Name    string `json:"name"`
	Request struct {
		Method            string            `json:"method"`
		Path              string            `json:"path"`
		Host              string            `json:"host"`
		Principal         string            `json:"principal"`
		ContextExtensions map[string]string `json:"context_extensions"`
	} `json:"request"`
	Want   *MappedRequest `json:"want"`
	Reason Reason         `json:"reason"`
}

func (c *mappingCase) envoyRequest() EnvoyRequest {
	r := c.Request
	return EnvoyRequest{Method: r.Method, Path: r.Path, Host: r.Host, SourcePrincipal: r.Principal, ContextExtensions: r.ContextExtensions}
}

// loadMappingFiles reads testdata/mapping/*.yaml, strictly (through JSON, so the keys are
// the bundle's JSON names).
func loadMappingFiles(t testing.TB) map[string]*mappingFile {
	t.Helper()
	paths, err := filepath.Glob("testdata/mapping/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no mapping cases: %v", err)
	}
	out := map[string]*mappingFile{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var f mappingFile
		if err := decodeJSONStrict(js, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for i, c := range f.Cases {
			if c.Name == "" || (c.Want == nil) == (c.Reason == "") {
				t.Fatalf("%s: case %d (%q) needs a name and exactly one of want and reason", p, i, c.Name)
			}
		}
		out[strings.TrimSuffix(filepath.Base(p), ".yaml")] = &f
	}
	return out
}

func TestMappingCases(t *testing.T) {
	for file, f := range loadMappingFiles(t) {
		if err := f.Mapping.Validate(); err != nil {
			t.Errorf("%s: mapping: %v", file, err)
		}
		for _, c := range f.Cases {
			t.Run(file+"/"+c.Name, func(t *testing.T) {
				got, reason := f.Mapping.Map(c.envoyRequest())
				if reason != c.Reason {
					t.Fatalf("reason = %q, want %q (mapped %+v)", reason, c.Reason, got)
				}
				if c.Want != nil && got != *c.Want {
					t.Errorf("mapped\n got %+v\nwant %+v", got, *c.Want)
				}
			})
		}
	}
}

func TestMappingNil(t *testing.T) {
	var m *Mapping
	got, reason := m.Map(EnvoyRequest{Method: "GET", Path: "/a?b", SourcePrincipal: "spiffe://d/sa/s", ContextExtensions: map[string]string{ContextDomain: "d"}})
	if want := (MappedRequest{Principal: "d.s", Domain: "d", Action: "get", Resource: "d:/a"}); reason != "" || got != want {
		t.Errorf("nil Mapping: %+v, %q; want %+v", got, reason, want)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("nil Mapping: Validate: %v", err)
	}
}

func TestMappingValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Mapping
		want string
	}{
		{"ok", Mapping{DefaultDomain: "d", Hosts: map[string]string{"a.example.com:80": "d"}, Namespaces: map[string]string{"ns": "d"}}, ""},
		{"upper-case host", Mapping{Hosts: map[string]string{"A.example.com": "d"}}, "lower-case"},
		{"URL as host", Mapping{Hosts: map[string]string{"https://a/": "d"}}, "not a URL"},
		{"empty value", Mapping{Principals: map[string]string{"spiffe://x": ""}}, "empty value"},
		{"empty key", Mapping{Namespaces: map[string]string{"": "d"}}, "empty key"},
		{"namespace with slash", Mapping{Namespaces: map[string]string{"a/b": "d"}}, "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
