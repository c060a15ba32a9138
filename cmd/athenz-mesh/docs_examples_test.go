package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/athenz-mesh/athenz-mesh/authz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/policy"
	"github.com/athenz-mesh/athenz-mesh/sds"
)

// TestDocsYAMLExamples decodes every ```yaml block of the operator docs strictly, with the
// loader of what it shows, so that a renamed or misspelt key in an example fails here
// instead of in a user's hands: component configs (each doc's own), domain files, decision
// case files and Istio's mesh config.
func TestDocsYAMLExamples(t *testing.T) {
	configOf := map[string]func([]byte) error{
		"agent.md":        func(b []byte) error { _, err := sds.DecodeAgentConfig(bytes.NewReader(b)); return err },
		"authz.md":        func(b []byte) error { _, err := authz.DecodeConfig(bytes.NewReader(b)); return err },
		"issuer.md":       func(b []byte) error { _, err := issuer.DecodeConfig(bytes.NewReader(b)); return err },
		"issuer-istio.md": func(b []byte) error { _, err := issuer.DecodeConfig(bytes.NewReader(b)); return err },
	}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range yamlBlocks(string(data)) {
			name := fmt.Sprintf("%s block %d", filepath.Base(doc), i+1)
			t.Run(name, func(t *testing.T) {
				var err error
				switch kind := yamlExampleKind(block); kind {
				case "mesh config":
					err = decodeMeshConfig(block)
				case "domain":
					_, err = policy.ParseDomain(name, block)
				case "cases":
					_, err = policy.ParseCases(name, block)
				default:
					decode := configOf[filepath.Base(doc)]
					if decode == nil {
						t.Fatalf("a yaml block in %s, whose configs this test does not know; add its loader", doc)
					}
					err = decode(block)
				}
				if err != nil {
					t.Fatalf("%v\n%s", err, block)
				}
			})
			checked++
		}
	}
	if checked < 8 {
		t.Fatalf("only %d yaml blocks found in docs/; the extraction is broken", checked)
	}
}

// yamlBlocks returns the contents of the ```yaml fences of a Markdown text.
func yamlBlocks(md string) [][]byte {
	var out [][]byte
	var cur *bytes.Buffer
	for line := range strings.SplitSeq(md, "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```yaml":
			cur = &bytes.Buffer{}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, cur.Bytes())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

// yamlExampleKind tells what a block shows from its top-level keys.
func yamlExampleKind(block []byte) string {
	var top map[string]any
	if yaml.Unmarshal(block, &top) != nil {
		return "config" // let the loader report it
	}
	_, name := top["name"]
	_, roles := top["roles"]
	_, cases := top["cases"]
	_, mesh := top["meshConfig"]
	switch {
	case mesh:
		return "mesh config"
	case name && roles:
		return "domain"
	case cases:
		return "cases"
	}
	return "config"
}

// decodeMeshConfig decodes the meshConfig of an IstioOperator snippet into Istio's
// MeshConfig, refusing unknown fields.
func decodeMeshConfig(block []byte) error {
	var doc struct {
		MeshConfig any `yaml:"meshConfig"`
	}
	if err := yaml.Unmarshal(block, &doc); err != nil {
		return err
	}
	js, err := json.Marshal(doc.MeshConfig)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(js, &meshv1alpha1.MeshConfig{})
}
