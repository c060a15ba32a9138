package issuer_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// TestConfigDocumented checks that every config field appears in the full example
// (testdata/issuer.yaml) and is named in docs/issuer.md.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/issuer.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var example map[string]any
	if err := yaml.Unmarshal(raw, &example); err != nil {
		t.Fatal(err)
	}
	lookup := func(path []string) bool {
		var cur any = example
		for _, p := range path {
			if l, ok := cur.([]any); ok {
				if len(l) == 0 {
					return false
				}
				cur = l[len(l)-1]
			}
			m, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			if cur, ok = m[p]; !ok {
				return false
			}
		}
		return true
	}
	for _, key := range yamlconfig.Keys(reflect.TypeFor[issuer.Config]()) {
		p := strings.Split(key, ".")
		name := p[len(p)-1]
		// Mutually exclusive alternatives appear as comments ("# name:").
		if !lookup(p) && !strings.Contains(string(raw), "# "+name+":") && !strings.Contains(string(raw), "#   "+name+":") {
			t.Errorf("%s is not in testdata/issuer.yaml", key)
		}
		if !strings.Contains(string(doc), name) {
			t.Errorf("%s is not named in docs/issuer.md", key)
		}
	}
}
