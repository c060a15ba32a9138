// Package charts tests the Helm chart in charts/athenz-mesh: it renders the chart with the
// Helm SDK, decodes every manifest strictly into its typed Kubernetes or Istio object, loads
// the rendered component configs with the components' own loaders and validators, and runs
// helm lint. The package has test files only, so the Helm SDK, client-go and Istio's
// client-go never reach the athenz-mesh binary's import graph.
package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	securityv1beta1 "istio.io/api/security/v1beta1"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "athenz-mesh"
	releaseName = "am"
	namespace   = "athenz-mesh"
)

// release is one rendering of the chart: every manifest decoded into its typed object,
// keyed by "Kind/name", and the rendered NOTES.txt.
type release struct {
	objects map[string]runtime.Object
	notes   string
}

// get returns the object of kind and name, failing the test when it was not rendered.
func get[T runtime.Object](t *testing.T, r *release, kind, name string) T {
	t.Helper()
	o, ok := r.objects[kind+"/"+name]
	if !ok {
		t.Fatalf("%s/%s not rendered; have %v", kind, name, r.names())
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s/%s decoded as %T", kind, name, o)
	}
	return v
}

func (r *release) has(kind, name string) bool {
	_, ok := r.objects[kind+"/"+name]
	return ok
}

func (r *release) names() []string {
	var out []string
	for k := range r.objects {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ofKind returns the objects of one kind, sorted by name.
func ofKind[T runtime.Object](r *release, kind string) []T {
	var keys []string
	for k := range r.objects {
		if strings.HasPrefix(k, kind+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []T
	for _, k := range keys {
		if v, ok := r.objects[k].(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// parseValues reads a values document written in a test case.
func parseValues(t *testing.T, doc string) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(doc))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return vals.AsMap()
}

// renderRaw renders the chart as `helm install` would (schema validation included) and
// returns the manifests by template name.
func renderRaw(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	return renderAs(t, vals, releaseName, namespace)
}

func renderAs(t *testing.T, vals map[string]any, name, ns string) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	caps := chartutil.DefaultCapabilities.Copy()
	opts := chartutil.ReleaseOptions{Name: name, Namespace: ns, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// render renders vals and decodes every manifest strictly.
func render(t *testing.T, vals map[string]any) *release {
	t.Helper()
	return renderRelease(t, vals, releaseName, namespace)
}

// renderRelease is render for another release name and namespace.
func renderRelease(t *testing.T, vals map[string]any, name, ns string) *release {
	t.Helper()
	out, err := renderAs(t, vals, name, ns)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := &release{objects: map[string]runtime.Object{}}
	var files []string
	for name := range out {
		files = append(files, name)
	}
	sort.Strings(files)
	for _, file := range files {
		content := out[file]
		if strings.HasSuffix(file, "NOTES.txt") {
			r.notes = content
			continue
		}
		if !strings.HasSuffix(file, ".yaml") {
			continue
		}
		for _, m := range releaseutil.SplitManifests(content) {
			if strings.TrimSpace(stripComments(m)) == "" {
				continue
			}
			obj, err := decodeStrict([]byte(m))
			if err != nil {
				t.Fatalf("%s: %v\n%s", file, err, m)
			}
			key, err := objectKey(obj)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if _, dup := r.objects[key]; dup {
				t.Fatalf("%s: %s rendered twice", file, key)
			}
			r.objects[key] = obj
		}
	}
	return r
}

func stripComments(m string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(m, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// decoder decodes YAML manifests into the typed objects of client-go's scheme, Istio's and
// the Prometheus Operator's, strictly: unknown and duplicate fields are errors.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, istioscheme.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// decodeStrict decodes one manifest. Istio's generated JSON unmarshalers accept unknown
// fields, so the spec of an Istio kind is decoded a second time with protojson, which
// does not.
func decodeStrict(manifest []byte) (runtime.Object, error) {
	obj, gvk, err := decoder.Decode(manifest, nil, nil)
	if err != nil {
		return nil, err
	}
	if gvk.Group == "security.istio.io" {
		var doc struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := yaml.Unmarshal(manifest, &doc); err != nil {
			return nil, err
		}
		var spec proto.Message
		switch gvk.Kind {
		case "AuthorizationPolicy":
			spec = &securityv1beta1.AuthorizationPolicy{}
		default:
			return nil, fmt.Errorf("no strict decoder for %s", gvk)
		}
		if err := (protojson.UnmarshalOptions{}).Unmarshal(doc.Spec, spec); err != nil {
			return nil, fmt.Errorf("%s spec: %w", gvk.Kind, err)
		}
	}
	return obj, nil
}

func objectKey(obj runtime.Object) (string, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	acc, ok := obj.(interface{ GetName() string })
	if !ok {
		return "", fmt.Errorf("%s has no name", gvk)
	}
	if acc.GetName() == "" {
		return "", fmt.Errorf("%s without a name", gvk.Kind)
	}
	return gvk.Kind + "/" + acc.GetName(), nil
}

// writeTemp writes data to a file in a test directory and returns its path.
func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecodeStrictRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, manifest string }{
		{"core field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selectr: {a: b}}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n"},
		{"istio spec field", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: CUSTOM, provider: {name: x}, rulez: []}\n"},
		{"istio enum", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: CUSTOMISED}\n"},
		{"service monitor field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: a}\nspec: {endpoint: []}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeStrict([]byte(tc.manifest)); err == nil {
				t.Fatalf("decoded without error:\n%s", tc.manifest)
			}
		})
	}
}

// schemaDocumented checks that every property of the values schema has a description
// and that every object forbids unknown keys, so a typo fails the install.
func TestSchemaDocumentsEveryValue(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if props, ok := s["properties"].(map[string]any); ok {
			if ap, ok := s["additionalProperties"]; !ok || ap != false {
				if path != "" && !strings.HasSuffix(path, "]") {
					t.Errorf("%s: properties without additionalProperties: false", path)
				}
			}
			for name, p := range props {
				ps := p.(map[string]any)
				if _, ok := ps["description"]; !ok {
					t.Errorf("%s.%s: no description", path, name)
				}
				walk(path+"."+name, ps)
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		for _, k := range []string{"oneOf", "anyOf"} {
			if alts, ok := s[k].([]any); ok {
				for _, a := range alts {
					walk(path, a.(map[string]any))
				}
			}
		}
	}
	walk("", schema)

	// And values.yaml documents every key it sets with a comment line above it.
	vals, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(vals), "\n")
	for i, line := range lines {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") || !strings.Contains(trim, ":") || strings.HasSuffix(trim, ":") {
			continue // blank, comment, list item text, or a block whose children say more
		}
		if !documented(lines, i) {
			t.Errorf("values.yaml:%d: %q has no comment above it or above a block holding it", i+1, trim)
		}
	}
}

// documented reports whether line i, or a line opening a block (or list) that holds it,
// has a comment directly above it.
func documented(lines []string, i int) bool {
	commented := func(j int) bool { return j > 0 && strings.HasPrefix(strings.TrimSpace(lines[j-1]), "#") }
	if commented(i) {
		return true
	}
	indentOf := func(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
	indent := indentOf(lines[i])
	for j := i - 1; j >= 0 && indent > 0; j-- {
		l := strings.TrimSpace(lines[j])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if ind := indentOf(lines[j]); ind < indent {
			if commented(j) {
				return true
			}
			indent = ind
		}
	}
	return false
}

// meshConfigSnippet returns the extensionProviders block that NOTES.txt prints, as JSON.
func meshConfigSnippet(t *testing.T, notes string) []byte {
	t.Helper()
	start := strings.Index(notes, "meshConfig:\n")
	if start < 0 {
		t.Fatalf("NOTES.txt has no meshConfig snippet:\n%s", notes)
	}
	block := notes[start:]
	if end := strings.Index(block, "\n\n"); end >= 0 {
		block = block[:end]
	}
	var doc struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("meshConfig snippet is not YAML: %v\n%s", err, block)
	}
	return doc.MeshConfig
}

func containsAll(haystack []string, needles ...string) bool {
	for _, n := range needles {
		if !slices.Contains(haystack, n) {
			return false
		}
	}
	return true
}
