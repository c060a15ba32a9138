package athenz_test

import (
	"encoding/json"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// TestIstioMapping covers the order of the rules and the JSON shape the bundle carries; the
// Kubernetes attestor's tests (attestor/k8s/mapping_test.go) cover the rest of the rules
// through the same type.
func TestIstioMapping(t *testing.T) {
	var m athenz.IstioMapping
	doc := `{"entries": [
		{"namespace": "payments", "service_account": "*", "domain": "finance.payments"},
		{"namespace": "payments", "service_account": "gateway", "domain": "finance.edge", "service": "gw"},
		{"namespace": "bad", "service_account": "api", "domain": "Sports", "service": "API"}
	], "rule": {"domain_prefix": "k8s.", "separator": "--"}}`
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ns, sa    string
		domain, service string
	}{
		{"exact entry first", "payments", "gateway", "finance.edge", "gw"},
		{"wildcard entry", "payments", "ledger", "finance.payments", "ledger"},
		{"entry results are lower-cased", "bad", "api", "sports", "api"},
		{"rule", "sports--prod", "api", "k8s.sports.prod", "api"},
		{"a matching entry decides, the rule is not tried", "payments", "a.b", "", ""},
		{"not a namespace", "Payments", "ledger", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s, ok := m.Map(tc.ns, tc.sa)
			if ok != (tc.domain != "") || d != tc.domain || s != tc.service {
				t.Fatalf("Map(%q, %q) = %q, %q, %v; want %q, %q", tc.ns, tc.sa, d, s, ok, tc.domain, tc.service)
			}
		})
	}
	var nilMapping *athenz.IstioMapping
	if _, _, ok := nilMapping.Map("payments", "ledger"); ok || nilMapping.Entry("payments", "ledger") != nil || nilMapping.Validate() != nil {
		t.Error("a nil mapping maps something or is invalid")
	}
	var nilRule *athenz.IstioNamingRule
	if _, _, ok := nilRule.Map("sports", "api"); ok {
		t.Error("a nil rule maps something")
	}
	out, err := json.Marshal(athenz.IstioMapping{Entries: []athenz.IstioMappingEntry{{Namespace: "a", ServiceAccount: "*", Domain: "d"}}})
	if err != nil || string(out) != `{"entries":[{"namespace":"a","service_account":"*","domain":"d"}]}` {
		t.Errorf("JSON form %s, %v", out, err)
	}
}

func TestKubernetesNames(t *testing.T) {
	for s, want := range map[string][2]bool{
		"sports":      {true, true},
		"sports-prod": {true, true},
		"a.b":         {false, true},
		"-a":          {false, false},
		"A":           {false, false},
		"":            {false, false},
		"a..b":        {false, false},
	} {
		if got := [2]bool{athenz.IsKubernetesNamespace(s), athenz.IsKubernetesName(s)}; got != want {
			t.Errorf("%q: namespace, name = %v, want %v", s, got, want)
		}
	}
}
