package k8s_test

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

func TestMapping(t *testing.T) {
	m := k8s.Mapping{
		Entries: []k8s.MappingEntry{
			{Namespace: "payments", ServiceAccount: "*", Domain: "finance.payments"},
			{Namespace: "payments", ServiceAccount: "gateway", Domain: "finance.edge", Service: "gw"},
			{Namespace: "batch", ServiceAccount: "*", Domain: "data", Service: "batch-runner"},
			{Namespace: "platform", ServiceAccount: "ca", Domain: "sys.auth", Service: "zts"},
		},
		Rule: &k8s.NamingRule{DomainPrefix: "k8s.", Separator: "--"},
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ns, sa    string
		domain, service string // empty: unmapped
	}{
		{name: "exact entry wins over the wildcard listed before it", ns: "payments", sa: "gateway", domain: "finance.edge", service: "gw"},
		{name: "wildcard with the account as service", ns: "payments", sa: "ledger", domain: "finance.payments", service: "ledger"},
		{name: "wildcard with a fixed service", ns: "batch", sa: "anything", domain: "data", service: "batch-runner"},
		{name: "explicit entry may name a system domain", ns: "platform", sa: "ca", domain: "sys.auth", service: "zts"},
		{name: "rule", ns: "sports", sa: "api", domain: "k8s.sports", service: "api"},
		{name: "rule with separator", ns: "sports--prod", sa: "api", domain: "k8s.sports.prod", service: "api"},
		{name: "rule keeps single dashes", ns: "sports-prod", sa: "api-v2", domain: "k8s.sports-prod", service: "api-v2"},
		{name: "rule cannot map a dotted account", ns: "sports", sa: "api.v2"},
		{name: "rule cannot make an empty label", ns: "a----b", sa: "api"},
		{name: "invalid namespace", ns: "Sports", sa: "api"},
		{name: "empty namespace", ns: "", sa: "api"},
		{name: "invalid account", ns: "sports", sa: "-api"},
		{name: "wildcard account is not a name", ns: "sports", sa: "*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, s, ok := m.Map(tc.ns, tc.sa)
			if ok != (tc.domain != "") || d != tc.domain || s != tc.service {
				t.Fatalf("Map(%q, %q) = %q, %q, %v; want %q, %q", tc.ns, tc.sa, d, s, ok, tc.domain, tc.service)
			}
		})
	}
}

func TestMappingRuleRefusesSystemDomains(t *testing.T) {
	for _, rule := range []k8s.NamingRule{{Separator: "--"}, {DomainPrefix: "sys."}, {DomainPrefix: "SYS."}} {
		m := k8s.Mapping{Rule: &rule}
		for _, ns := range []string{"sys", "sys--auth", "auth"} {
			if d, s, ok := m.Map(ns, "zts"); ok && (d == "sys" || strings.HasPrefix(d, "sys.")) {
				t.Errorf("rule %+v maps %s/zts to %s.%s", rule, ns, d, s)
			}
		}
	}
	var zero k8s.Mapping
	if _, _, ok := zero.Map("sports", "api"); ok {
		t.Error("the zero mapping maps something")
	}
	var nilMapping *k8s.Mapping
	if _, _, ok := nilMapping.Map("sports", "api"); ok || nilMapping.Validate() != nil {
		t.Error("a nil mapping maps something or is invalid")
	}
}

func TestMappingValidate(t *testing.T) {
	bad := map[string]k8s.Mapping{
		"upper-case namespace":    {Entries: []k8s.MappingEntry{{Namespace: "Sports", ServiceAccount: "api", Domain: "sports", Service: "api"}}},
		"no service account":      {Entries: []k8s.MappingEntry{{Namespace: "sports", Domain: "sports", Service: "api"}}},
		"bad domain":              {Entries: []k8s.MappingEntry{{Namespace: "sports", ServiceAccount: "api", Domain: "sports..x", Service: "api"}}},
		"dotted service":          {Entries: []k8s.MappingEntry{{Namespace: "sports", ServiceAccount: "api", Domain: "sports", Service: "a.b"}}},
		"no service, no wildcard": {Entries: []k8s.MappingEntry{{Namespace: "sports", ServiceAccount: "api", Domain: "sports"}}},
		"duplicate": {Entries: []k8s.MappingEntry{
			{Namespace: "sports", ServiceAccount: "api", Domain: "sports", Service: "api"},
			{Namespace: "sports", ServiceAccount: "api", Domain: "other", Service: "api"},
		}},
		"bad prefix":    {Rule: &k8s.NamingRule{DomainPrefix: ".k8s."}},
		"bad separator": {Rule: &k8s.NamingRule{Separator: "."}},
	}
	for name, m := range bad {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	// Every problem is reported at once.
	m := k8s.Mapping{Entries: []k8s.MappingEntry{{Namespace: "A"}, {Namespace: "B"}}, Rule: &k8s.NamingRule{Separator: "_"}}
	if err := m.Validate(); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Errorf("want several problems, got %v", err)
	}
}

// TestMappingREADME: the mapping example in README.md decodes strictly and means what the
// README says.
func TestMappingREADME(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\nmapping:\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```yaml mapping: example")
	}
	var doc struct {
		Mapping k8s.Mapping `yaml:"mapping"`
	}
	dec := yaml.NewDecoder(strings.NewReader("mapping:\n" + block))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if err := doc.Mapping.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][4]string{
		{"sports--prod", "api", "k8s.sports.prod", "api"},
		{"payments", "ledger", "finance.payments", "ledger"},
		{"payments", "gateway", "finance.edge", "gw"},
	} {
		if d, s, ok := doc.Mapping.Map(c[0], c[1]); !ok || d != c[2] || s != c[3] {
			t.Errorf("Map(%s, %s) = %s, %s, %v; want %s, %s", c[0], c[1], d, s, ok, c[2], c[3])
		}
	}
}
