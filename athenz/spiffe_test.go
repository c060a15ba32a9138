package athenz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestParseSpiffeID(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    athenz.SpiffeIdentity
		wantErr string
	}{
		{"basic service", "spiffe://sports/sa/api",
			athenz.SpiffeIdentity{TrustDomain: "sports", Domain: "sports", Service: "api", Form: athenz.SpiffeFormService}, ""},
		{"basic service, dotted domain", "spiffe://sports.prod/sa/api",
			athenz.SpiffeIdentity{TrustDomain: "sports.prod", Domain: "sports.prod", Service: "api", Form: athenz.SpiffeFormService}, ""},
		{"trust domain service", "spiffe://athenz.io/ns/prod/sa/sports.prod.api",
			athenz.SpiffeIdentity{TrustDomain: "athenz.io", Namespace: "prod", Domain: "sports.prod", Service: "api", Form: athenz.SpiffeFormServiceNamespace}, ""},
		{"basic role", "spiffe://sports/ra/readers",
			athenz.SpiffeIdentity{TrustDomain: "sports", Domain: "sports", Role: "readers", Form: athenz.SpiffeFormRole}, ""},
		{"trust domain role", "spiffe://athenz.io/ns/sports/ra/readers.eu",
			athenz.SpiffeIdentity{TrustDomain: "athenz.io", Namespace: "sports", Domain: "sports", Role: "readers.eu", Form: athenz.SpiffeFormRoleNamespace}, ""},
		{"istio", "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
			athenz.SpiffeIdentity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "bookinfo-productpage", Form: athenz.SpiffeFormIstio}, ""},
		{"upper case trust domain", "spiffe://Sports/sa/api", athenz.SpiffeIdentity{}, "trust domain"},
		{"upper case scheme", "SPIFFE://sports/sa/api", athenz.SpiffeIdentity{}, "scheme"},
		{"other scheme", "athenz://sports/sa/api", athenz.SpiffeIdentity{}, "scheme"},
		{"extra segment", "spiffe://sports/sa/api/extra", athenz.SpiffeIdentity{}, "not an Athenz or Istio form"},
		{"no path", "spiffe://sports", athenz.SpiffeIdentity{}, "not an Athenz or Istio form"},
		{"unknown form", "spiffe://athenz/domain1/service1", athenz.SpiffeIdentity{}, "not an Athenz or Istio form"},
		{"trailing slash", "spiffe://sports/sa/api/", athenz.SpiffeIdentity{}, "trailing"},
		{"dot dot", "spiffe://sports/sa/../ra/admin", athenz.SpiffeIdentity{}, "dot segment"},
		{"empty segment", "spiffe://sports//sa/api", athenz.SpiffeIdentity{}, "empty"},
		{"percent escape", "spiffe://sports/sa/a%2Fb", athenz.SpiffeIdentity{}, "path segment characters"},
		{"query", "spiffe://sports/sa/api?x=1", athenz.SpiffeIdentity{}, "path segment characters"},
		{"fragment", "spiffe://sports/sa/api#x", athenz.SpiffeIdentity{}, "path segment characters"},
		{"port", "spiffe://sports:8443/sa/api", athenz.SpiffeIdentity{}, "trust domain"},
		{"user info", "spiffe://u@sports/sa/api", athenz.SpiffeIdentity{}, "trust domain"},
		{"dotted basic service", "spiffe://sports/sa/a.b", athenz.SpiffeIdentity{}, "simple name"},
		{"bad domain", "spiffe://-sports/sa/api", athenz.SpiffeIdentity{}, "domain name"},
		{"leading dot principal", "spiffe://td/ns/prod/sa/.api", athenz.SpiffeIdentity{}, "domain name"},
		{"trailing dot principal", "spiffe://td/ns/prod/sa/sports.", athenz.SpiffeIdentity{}, "domain name"},
		{"bad role domain", "spiffe://td/ns/a..b/ra/r", athenz.SpiffeIdentity{}, "domain name"},
		{"bad role", "spiffe://sports/ra/-r", athenz.SpiffeIdentity{}, "role"},
		{"too long", "spiffe://sports/sa/" + strings.Repeat("a", 3000), athenz.SpiffeIdentity{}, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := athenz.ParseSpiffeID(tc.uri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, athenz.ErrInvalidIdentity) {
					t.Errorf("error %v does not wrap ErrInvalidIdentity", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if rebuilt := rebuildSpiffeID(got); rebuilt != tc.uri {
				t.Errorf("rebuilt %q from %+v, want %q", rebuilt, got, tc.uri)
			}
		})
	}
}

// rebuildSpiffeID writes a parsed identity back with the package's builders.
func rebuildSpiffeID(s athenz.SpiffeIdentity) string {
	switch s.Form {
	case athenz.SpiffeFormService:
		return athenz.SpiffeID("", "", s.Domain, s.Service)
	case athenz.SpiffeFormServiceNamespace:
		return athenz.SpiffeID(s.TrustDomain, s.Namespace, s.Domain, s.Service)
	case athenz.SpiffeFormRole:
		return athenz.RoleSpiffeID("", s.Domain, s.Role)
	case athenz.SpiffeFormRoleNamespace:
		return athenz.RoleSpiffeID(s.TrustDomain, s.Domain, s.Role)
	case athenz.SpiffeFormIstio:
		return "spiffe://" + s.TrustDomain + "/ns/" + s.Namespace + "/sa/" + s.ServiceAccount
	}
	return ""
}

func TestSpiffeIDBuilders(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"basic", athenz.SpiffeID("", "ignored", "sports", "api"), "spiffe://sports/sa/api"},
		{"trust domain", athenz.SpiffeID("athenz.io", "prod", "sports", "api"), "spiffe://athenz.io/ns/prod/sa/sports.api"},
		{"default namespace", athenz.SpiffeID("athenz.io", "", "sports", "api"), "spiffe://athenz.io/ns/default/sa/sports.api"},
		{"basic role", athenz.RoleSpiffeID("", "sports", "readers"), "spiffe://sports/ra/readers"},
		{"trust domain role", athenz.RoleSpiffeID("athenz.io", "sports", "readers"), "spiffe://athenz.io/ns/sports/ra/readers"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	forms := map[athenz.SpiffeForm]string{
		athenz.SpiffeFormUnknown: "unknown", athenz.SpiffeFormService: "service", athenz.SpiffeFormServiceNamespace: "service-namespace",
		athenz.SpiffeFormRole: "role", athenz.SpiffeFormRoleNamespace: "role-namespace", athenz.SpiffeFormIstio: "istio",
	}
	for f, want := range forms {
		if f.String() != want {
			t.Errorf("%d.String() = %q, want %q", f, f.String(), want)
		}
	}
	if p := (athenz.SpiffeIdentity{Form: athenz.SpiffeFormRole, Domain: "d", Role: "r"}).Principal(); p != "" {
		t.Errorf("role identity Principal() = %q", p)
	}
}
