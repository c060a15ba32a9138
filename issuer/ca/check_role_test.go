package ca

import (
	"crypto/x509"
	"errors"
	"net"
	"reflect"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func roleIdentity() RoleIdentity {
	return RoleIdentity{
		Domain: "sports.prod", Role: "readers", Principal: "weather.api",
		DNSSuffixes: []string{"athenz.cloud"}, InstanceID: "i-0abc", InstanceProvider: "athenz.aws",
	}
}

const (
	roleSpiffe    = "spiffe://sports.prod/ra/readers"
	rolePrincipal = "athenz://principal/weather.api"
)

// goodRole is a SIA-like role CSR that roleIdentity accepts.
func goodRole() csrSpec {
	return csrSpec{cn: "sports.prod:role.readers", uris: []string{roleSpiffe, "athenz://instanceid/athenz.aws/i-0abc", rolePrincipal}}
}

func TestCheckRoleCSRAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   func(*RoleIdentity)
		spec func(*csrSpec)
		want IssueRequest
	}{
		{
			name: "SIA role CSR",
			want: IssueRequest{CommonName: "sports.prod:role.readers", URIs: urls(t, roleSpiffe, "athenz://instanceid/athenz.aws/i-0abc", rolePrincipal)},
		},
		{
			name: "zts-rolecert CSR: email, DNS name, principal URI, upper-case CN",
			spec: func(s *csrSpec) {
				s.cn = "Sports.Prod:role.Readers"
				s.emails = []string{"Weather.API@athenz.cloud"}
				s.dns = []string{"api.weather.athenz.cloud"}
				s.uris = []string{rolePrincipal}
			},
			want: IssueRequest{CommonName: "sports.prod:role.readers", EmailAddresses: []string{"weather.api@athenz.cloud"},
				DNSNames: []string{"api.weather.athenz.cloud"}, URIs: urls(t, rolePrincipal)},
		},
		{
			name: "email only",
			spec: func(s *csrSpec) { s.uris, s.emails = nil, []string{"weather.api@athenz.cloud"} },
			want: IssueRequest{CommonName: "sports.prod:role.readers", EmailAddresses: []string{"weather.api@athenz.cloud"}},
		},
		{
			name: "trust-domain SPIFFE form, added, client auth only",
			id: func(id *RoleIdentity) {
				id.SpiffeTrustDomain, id.AddSpiffeID, id.ClientAuthOnly = "athenz.io", true, true
			},
			spec: func(s *csrSpec) { s.uris = []string{rolePrincipal} },
			want: IssueRequest{CommonName: "sports.prod:role.readers", ClientAuthOnly: true,
				URIs: urls(t, "spiffe://athenz.io/ns/sports.prod/ra/readers", rolePrincipal)},
		},
		{
			name: "proxy request",
			id:   func(id *RoleIdentity) { id.ProxyUser = "gateway.proxy" },
			spec: func(s *csrSpec) { s.uris = []string{rolePrincipal, "athenz://proxyuser/gateway.proxy"} },
			want: IssueRequest{CommonName: "sports.prod:role.readers", URIs: urls(t, rolePrincipal, "athenz://proxyuser/gateway.proxy")},
		},
		{
			name: "instance id, provider not compared",
			id:   func(id *RoleIdentity) { id.InstanceProvider = "" },
			spec: func(s *csrSpec) { s.uris = []string{rolePrincipal, "athenz://instanceid/athenz.gcp/i-0abc"} },
			want: IssueRequest{CommonName: "sports.prod:role.readers", URIs: urls(t, "athenz://instanceid/athenz.gcp/i-0abc", rolePrincipal)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, spec := roleIdentity(), goodRole()
			if tt.id != nil {
				tt.id(&id)
			}
			if tt.spec != nil {
				tt.spec(&spec)
			}
			csr := makeCSR(t, spec)
			got, err := CheckRoleCSR(csr, id)
			if err != nil {
				t.Fatalf("CheckRoleCSR: %v", err)
			}
			tt.want.PublicKey = csr.PublicKey
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("request =\n%+v\nwant\n%+v", got, tt.want)
			}
			is, err := mustSharedCA(t).Issue(got)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := athenz.PrincipalFromCertificate(is.Certificate)
			if err != nil {
				t.Fatalf("PrincipalFromCertificate: %v", err)
			}
			if ci.Principal != "weather.api" || !ci.IsRoleCertificate() || ci.Roles[0] != (athenz.RoleRef{Domain: "sports.prod", Role: "readers"}) {
				t.Errorf("issued certificate reads as %+v", ci)
			}
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
			if id.ClientAuthOnly {
				wantEKU = wantEKU[1:]
			}
			if !reflect.DeepEqual(is.Certificate.ExtKeyUsage, wantEKU) {
				t.Errorf("extKeyUsage = %v, want %v", is.Certificate.ExtKeyUsage, wantEKU)
			}
		})
	}
}

func TestCheckRoleCSRRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		id    func(*RoleIdentity)
		spec  func(*csrSpec)
		field string
		want  string
	}{
		{"CN of another role", nil, func(s *csrSpec) { s.cn = "sports.prod:role.writers" }, FieldCommonName, `want "sports.prod:role.readers"`},
		{"CN of another domain", nil, func(s *csrSpec) { s.cn = "weather:role.readers" }, FieldCommonName, `want "sports.prod:role.readers"`},
		{"service CN", nil, func(s *csrSpec) { s.cn = "weather.api" }, FieldCommonName, "want"},
		{"CN missing", nil, func(s *csrSpec) { s.cn = "" }, FieldCommonName, "missing"},
		{"no principal", nil, func(s *csrSpec) { s.uris = []string{roleSpiffe} }, FieldURI,
			`names no principal; want the URI "athenz://principal/weather.api" or the email SAN "weather.api@athenz.cloud"`},
		{"principal URI of another service", nil, func(s *csrSpec) { s.uris = []string{"athenz://principal/weather.web"} }, FieldURI, "names another principal"},
		{"two principal URIs", nil, func(s *csrSpec) { s.uris = append(s.uris, rolePrincipal) }, FieldURI, "a second principal URI"},
		{"email of another service", nil, func(s *csrSpec) { s.emails = []string{"weather.web@athenz.cloud"} }, FieldEmail, "does not name the principal weather.api"},
		{"email with another suffix", nil, func(s *csrSpec) { s.emails = []string{"weather.api@evil.com"} }, FieldEmail, `want "weather.api@athenz.cloud"`},
		{"two emails", nil, func(s *csrSpec) { s.emails = []string{"weather.api@athenz.cloud", "weather.api@athenz.cloud"} }, FieldEmail, "2 email SANs"},
		{"email with no suffix configured", func(id *RoleIdentity) { id.DNSSuffixes = nil },
			func(s *csrSpec) { s.emails = []string{"weather.api@athenz.cloud"} }, FieldEmail, "no email SAN is allowed"},
		{"two SPIFFE URIs", nil, func(s *csrSpec) { s.uris = append(s.uris, roleSpiffe) }, FieldURI, "a second SPIFFE ID"},
		{"SPIFFE ID of another role", nil, func(s *csrSpec) { s.uris = []string{"spiffe://sports.prod/ra/writers", rolePrincipal} }, FieldURI, "not the SPIFFE ID of role sports.prod:role.readers"},
		{"service SPIFFE ID", nil, func(s *csrSpec) { s.uris = []string{"spiffe://weather/sa/api", rolePrincipal} }, FieldURI, "not the SPIFFE ID"},
		{"wrong instance id", nil, func(s *csrSpec) { s.uris = []string{rolePrincipal, "athenz://instanceid/athenz.aws/i-0def"} }, FieldURI,
			`names instance "i-0def", but the caller's certificate names "i-0abc"`},
		{"wrong instance provider", nil, func(s *csrSpec) { s.uris = []string{rolePrincipal, "athenz://instanceid/athenz.gcp/i-0abc"} }, FieldURI, `names provider "athenz.gcp"`},
		{"instance id without one in the caller's cert", func(id *RoleIdentity) { id.InstanceID = "" }, nil, FieldURI, "the caller's certificate has no instance id"},
		{"proxy user URI in a direct request", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://proxyuser/gateway.proxy") }, FieldURI, "not a proxy request"},
		{"proxy request without proxy user URI", func(id *RoleIdentity) { id.ProxyUser = "gateway.proxy" }, nil, FieldURI, "proxy request without the proxy user URI"},
		{"proxy user URI naming another proxy", func(id *RoleIdentity) { id.ProxyUser = "gateway.proxy" },
			func(s *csrSpec) { s.uris = append(s.uris, "athenz://proxyuser/evil.proxy") }, FieldURI, `want exactly one proxy user URI, "athenz://proxyuser/gateway.proxy"`},
		{"multi-role URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://role/sports.prod/writers") }, FieldURI, "URI not allowed in a role certificate"},
		{"hostname URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://hostname/h.example.com") }, FieldURI, "URI not allowed"},
		{"DNS name of another service", nil, func(s *csrSpec) { s.dns = []string{"web.weather.athenz.cloud"} }, FieldDNSName, "not the DNS name of the principal weather.api"},
		{"DNS name of the role domain", nil, func(s *csrSpec) { s.dns = []string{"readers.sports-prod.athenz.cloud"} }, FieldDNSName, "not the DNS name"},
		{"IP not allowed", nil, func(s *csrSpec) { s.ips = []net.IP{net.ParseIP("::1")} }, FieldIP, "IP SANs are not allowed"},
		{"C not allowed", func(id *RoleIdentity) { id.Subject.Countries = []string{"US"} }, func(s *csrSpec) { s.c = []string{"FR"} }, FieldCountry, "not an allowed value"},
		{"P-521 key", nil, func(s *csrSpec) { s.key = testKeys().p521 }, FieldPublicKey, "P-521"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, spec := roleIdentity(), goodRole()
			if tt.id != nil {
				tt.id(&id)
			}
			if tt.spec != nil {
				tt.spec(&spec)
			}
			req, err := CheckRoleCSR(makeCSR(t, spec), id)
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			wantCSRError(t, err, tt.field, tt.want)
		})
	}
}

func TestCheckRoleCSRBadIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   func(*RoleIdentity)
	}{
		{"empty domain", func(id *RoleIdentity) { id.Domain = "" }},
		{"bad role", func(id *RoleIdentity) { id.Role = "a b" }},
		{"principal without a dot", func(id *RoleIdentity) { id.Principal = "api" }},
		{"bad proxy user", func(id *RoleIdentity) { id.ProxyUser = "x/y" }},
		{"bad DNS suffix", func(id *RoleIdentity) { id.DNSSuffixes = []string{"-bad.cloud"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := roleIdentity()
			tt.id(&id)
			if _, err := CheckRoleCSR(makeCSR(t, goodRole()), id); !errors.Is(err, ErrBadIdentity) {
				t.Fatalf("error = %v, want ErrBadIdentity", err)
			}
		})
	}
}
