package ca

import (
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"reflect"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// svcIdentity is the identity most service tests check against.
func svcIdentity() ServiceIdentity {
	return ServiceIdentity{
		Domain: "sports.prod", Service: "api", Provider: "athenz.k8s", InstanceID: "pod-1234",
		DNSSuffixes: []string{"athenz.cloud", ".svc.example.com"},
		Hostnames:   []string{"api-0.api.sports.svc.cluster.local"},
	}
}

const (
	svcSpiffe   = "spiffe://sports.prod/sa/api"
	svcInstance = "athenz://instanceid/athenz.k8s/pod-1234"
	svcDNS      = "api.sports-prod.athenz.cloud"
)

// goodSvc is a CSR that svcIdentity accepts, to be modified by each case.
func goodSvc() csrSpec {
	return csrSpec{cn: "sports.prod.api", dns: []string{svcDNS}, uris: []string{svcSpiffe, svcInstance}}
}

func urls(t testing.TB, list ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func TestCheckServiceCSRAccepts(t *testing.T) {
	t.Parallel()
	ip := net.ParseIP("10.1.2.3")
	tests := []struct {
		name string
		id   func(*ServiceIdentity)
		spec func(*csrSpec)
		want IssueRequest // PublicKey is filled in
	}{
		{
			name: "SIA-like request, names lower-cased, O/OU/C dropped",
			spec: func(s *csrSpec) {
				s.cn = "Sports.Prod.API"
				s.dns = []string{"API.sports-prod.athenz.cloud", "api.sports-prod.svc.example.com"}
				s.o, s.ou, s.c, s.l = []string{"Oath Inc."}, []string{"athenz.k8s"}, []string{"US"}, []string{"Sunnyvale"}
			},
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS, "api.sports-prod.svc.example.com"}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "URIs reordered SPIFFE first",
			spec: func(s *csrSpec) { s.uris = []string{svcInstance, svcSpiffe} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "wildcard when allowed",
			id:   func(id *ServiceIdentity) { id.AllowWildcardDNS = true },
			spec: func(s *csrSpec) { s.dns = append(s.dns, "*.api.sports-prod.athenz.cloud") },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS, "*.api.sports-prod.athenz.cloud"}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "legacy instance id DNS name",
			spec: func(s *csrSpec) { s.dns = []string{"pod-1234.instanceid.athenz.athenz.cloud"} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{"pod-1234.instanceid.athenz.athenz.cloud"}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "allowed hostname as DNS SAN and hostname URI",
			spec: func(s *csrSpec) {
				s.dns = []string{"Api-0.api.sports.svc.cluster.local"}
				s.uris = append(s.uris, "athenz://hostname/api-0.api.sports.svc.cluster.local")
			},
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{"api-0.api.sports.svc.cluster.local"},
				URIs: urls(t, svcSpiffe, svcInstance, "athenz://hostname/api-0.api.sports.svc.cluster.local")},
		},
		{
			name: "trust-domain SPIFFE form with namespace",
			id:   func(id *ServiceIdentity) { id.SpiffeTrustDomain, id.Namespace = "athenz.io", "prod" },
			spec: func(s *csrSpec) { s.uris = []string{"spiffe://athenz.io/ns/prod/sa/sports.prod.api", svcInstance} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, "spiffe://athenz.io/ns/prod/sa/sports.prod.api", svcInstance)},
		},
		{
			name: "basic form forced despite a trust domain",
			id:   func(id *ServiceIdentity) { id.SpiffeTrustDomain, id.SpiffeForm = "athenz.io", athenz.SpiffeFormService },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "SPIFFE ID added when missing",
			id:   func(id *ServiceIdentity) { id.AddSpiffeID = true },
			spec: func(s *csrSpec) { s.uris = []string{svcInstance} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "no SPIFFE ID and none added",
			spec: func(s *csrSpec) { s.uris = []string{svcInstance} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcInstance)},
		},
		{
			name: "no instance id attested, none in the CSR",
			id:   func(id *ServiceIdentity) { id.InstanceID, id.Provider = "", "" },
			spec: func(s *csrSpec) { s.uris = []string{svcSpiffe} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe)},
		},
		{
			name: "allowed IP, v4 in 4 bytes",
			id:   func(id *ServiceIdentity) { id.AllowIPs = []net.IP{ip} },
			spec: func(s *csrSpec) { s.ips = []net.IP{ip.To16()} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance), IPAddresses: []net.IP{ip.To4()}},
		},
		{
			name: "allowed O, OU and C pass through",
			id: func(id *ServiceIdentity) {
				id.Subject = SubjectPolicy{Organizations: []string{"Oath Inc."}, OrganizationalUnits: []string{"athenz.k8s"}, Countries: []string{"US"}}
			},
			spec: func(s *csrSpec) { s.o, s.ou, s.c = []string{"Oath Inc."}, []string{"athenz.k8s"}, []string{"US"} },
			want: IssueRequest{CommonName: "sports.prod.api", Organization: []string{"Oath Inc."}, OrganizationalUnit: []string{"athenz.k8s"}, Country: []string{"US"},
				DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
		{
			name: "Istio CSR: no CN, mapped SPIFFE ID",
			id: func(id *ServiceIdentity) {
				id.AllowEmptyCN, id.SpiffeID, id.InstanceID, id.Provider = true, "spiffe://cluster.local/ns/sports/sa/api", "", ""
			},
			spec: func(s *csrSpec) { *s = csrSpec{uris: []string{"spiffe://cluster.local/ns/sports/sa/api"}} },
			want: IssueRequest{CommonName: "sports.prod.api", URIs: urls(t, "spiffe://cluster.local/ns/sports/sa/api")},
		},
		{
			name: "duplicates issued once",
			spec: func(s *csrSpec) { s.dns = []string{svcDNS, "API.sports-prod.athenz.cloud", svcDNS} },
			want: IssueRequest{CommonName: "sports.prod.api", DNSNames: []string{svcDNS}, URIs: urls(t, svcSpiffe, svcInstance)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, spec := svcIdentity(), goodSvc()
			if tt.id != nil {
				tt.id(&id)
			}
			if tt.spec != nil {
				tt.spec(&spec)
			}
			csr := makeCSR(t, spec)
			got, err := CheckServiceCSR(csr, id)
			if err != nil {
				t.Fatalf("CheckServiceCSR: %v", err)
			}
			tt.want.PublicKey = csr.PublicKey
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("request =\n%+v\nwant\n%+v", got, tt.want)
			}
			// The issued certificate carries exactly the request and names the service.
			is, err := mustSharedCA(t).Issue(got)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := athenz.PrincipalFromCertificate(is.Certificate)
			if err != nil && !errors.Is(err, athenz.ErrUnmappedSpiffeID) {
				t.Fatalf("PrincipalFromCertificate: %v", err)
			}
			if err == nil && ci.Principal != "sports.prod.api" {
				t.Errorf("issued certificate names %q", ci.Principal)
			}
		})
	}
}

func TestCheckServiceCSRRefuses(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	tests := []struct {
		name  string
		id    func(*ServiceIdentity)
		spec  func(*csrSpec)
		field string
		want  string
	}{
		{"CN of another service", nil, func(s *csrSpec) { s.cn = "sports.prod.web" }, FieldCommonName, `"sports.prod.web": want "sports.prod.api"`},
		{"CN of another domain", nil, func(s *csrSpec) { s.cn = "weather.api" }, FieldCommonName, `want "sports.prod.api"`},
		{"CN with a suffix", nil, func(s *csrSpec) { s.cn = "sports.prod.api.evil" }, FieldCommonName, `want "sports.prod.api"`},
		{"CN with a Unicode look-alike", func(id *ServiceIdentity) { id.Service = "kube" }, func(s *csrSpec) { s.cn = "sports.prod.\u212aube" }, FieldCommonName, `want "sports.prod.kube"`},
		{"CN missing", nil, func(s *csrSpec) { s.cn = "" }, FieldCommonName, `missing; want "sports.prod.api"`},
		{"two CNs", nil, func(s *csrSpec) { s.extraCNs = []string{"sports.prod.api"} }, FieldCommonName, "2 common names"},
		{"DNS SAN of another service", nil, func(s *csrSpec) { s.dns = append(s.dns, "web.sports-prod.athenz.cloud") }, FieldDNSName,
			`"web.sports-prod.athenz.cloud": not a name of sports.prod.api; want "api.sports-prod.athenz.cloud"`},
		{"DNS SAN of another domain", nil, func(s *csrSpec) { s.dns = []string{"api.weather.athenz.cloud"} }, FieldDNSName, `"api.weather.athenz.cloud": not a name of sports.prod.api`},
		{"DNS SAN with another suffix", nil, func(s *csrSpec) { s.dns = []string{"api.sports-prod.evil.com"} }, FieldDNSName, "not a name of sports.prod.api"},
		{"DNS SAN prefixed", nil, func(s *csrSpec) { s.dns = []string{"x.api.sports-prod.athenz.cloud"} }, FieldDNSName, "not a name of"},
		{"wildcard not allowed", nil, func(s *csrSpec) { s.dns = []string{"*.api.sports-prod.athenz.cloud"} }, FieldDNSName, `"*.api.sports-prod.athenz.cloud"`},
		{"wildcard of another service", func(id *ServiceIdentity) { id.AllowWildcardDNS = true },
			func(s *csrSpec) { s.dns = []string{"*.web.sports-prod.athenz.cloud"} }, FieldDNSName, `"*.web.sports-prod.athenz.cloud"`},
		{"bare wildcard", func(id *ServiceIdentity) { id.AllowWildcardDNS = true }, func(s *csrSpec) { s.dns = []string{"*.athenz.cloud"} }, FieldDNSName, "not a name of"},
		{"instance id DNS of another instance", nil, func(s *csrSpec) { s.dns = []string{"pod-9999.instanceid.athenz.athenz.cloud"} }, FieldDNSName, `"pod-9999.instanceid.athenz.athenz.cloud"`},
		{"instance id DNS with no instance attested", func(id *ServiceIdentity) { id.InstanceID, id.Provider = "", "" },
			func(s *csrSpec) { s.dns, s.uris = []string{"pod-1234.instanceid.athenz.athenz.cloud"}, nil }, FieldDNSName, "not a name of"},
		{"hostname not allowed", nil, func(s *csrSpec) { s.dns = []string{"localhost"} }, FieldDNSName, `"localhost"`},
		{"DNS SAN with no suffix or hostname configured", func(id *ServiceIdentity) { id.DNSSuffixes, id.Hostnames = nil, nil }, nil, FieldDNSName, "no DNS name is allowed for sports.prod.api"},
		{"two SPIFFE URIs", nil, func(s *csrSpec) { s.uris = append(s.uris, svcSpiffe) }, FieldURI, "a second SPIFFE ID"},
		{"SPIFFE ID of another service", nil, func(s *csrSpec) { s.uris = []string{"spiffe://sports.prod/sa/web", svcInstance} }, FieldURI,
			`"spiffe://sports.prod/sa/web": not the SPIFFE ID of sports.prod.api; want "spiffe://sports.prod/sa/api"`},
		{"SPIFFE ID of another domain", nil, func(s *csrSpec) { s.uris = []string{"spiffe://weather/sa/api", svcInstance} }, FieldURI, "not the SPIFFE ID"},
		{"SPIFFE ID in the other form", nil, func(s *csrSpec) { s.uris = []string{"spiffe://athenz.io/ns/default/sa/sports.prod.api", svcInstance} }, FieldURI, "not the SPIFFE ID"},
		{"SPIFFE role ID", nil, func(s *csrSpec) { s.uris = []string{"spiffe://sports.prod/ra/admin", svcInstance} }, FieldURI, "not the SPIFFE ID"},
		{"SPIFFE ID with a query", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe + "?x=1", svcInstance} }, FieldURI, "not the SPIFFE ID"},
		{"SPIFFE ID with a trailing slash", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe + "/", svcInstance} }, FieldURI, "not the SPIFFE ID"},
		{"wrong instance id", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe, "athenz://instanceid/athenz.k8s/pod-9999"} }, FieldURI,
			`names instance "pod-9999", but the request was attested for instance "pod-1234"`},
		{"instance id differing in case", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe, "athenz://instanceid/athenz.k8s/POD-1234"} }, FieldURI, "names instance"},
		{"wrong provider", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe, "athenz://instanceid/athenz.aws/pod-1234"} }, FieldURI, `names provider "athenz.aws"`},
		{"instance id missing", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe} }, FieldURI, `missing the instance id URI; want "athenz://instanceid/athenz.k8s/pod-1234"`},
		{"instance id not attested", func(id *ServiceIdentity) { id.InstanceID, id.Provider = "", "" }, nil, FieldURI, "no instance id was attested"},
		{"two instance ids", nil, func(s *csrSpec) { s.uris = append(s.uris, svcInstance) }, FieldURI, "a second instance id URI"},
		{"malformed instance id URI", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe, "athenz://instanceid/athenz.k8s"} }, FieldURI, "malformed instance id URI"},
		{"instance id with extra path", nil, func(s *csrSpec) { s.uris = []string{svcSpiffe, svcInstance + "/x"} }, FieldURI, "instance"},
		{"hostname URI not allowed", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://hostname/evil.example.com") }, FieldURI, "hostname is not one the service may use"},
		{"https URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "https://evil.example.com") }, FieldURI, `"https://evil.example.com": URI not allowed in a service certificate`},
		{"principal URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://principal/sports.prod.api") }, FieldURI, "URI not allowed"},
		{"role URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://role/sports.prod/admin") }, FieldURI, "URI not allowed"},
		{"instance name URI", nil, func(s *csrSpec) { s.uris = append(s.uris, "athenz://instancename/123/api-0") }, FieldURI, "URI not allowed"},
		{"email SAN", nil, func(s *csrSpec) { s.emails = []string{"sports.prod.api@athenz.cloud"} }, FieldEmail, "not allowed in a service certificate"},
		{"IP when none allowed", nil, func(s *csrSpec) { s.ips = []net.IP{net.ParseIP("10.0.0.1")} }, FieldIP, `"10.0.0.1": IP SANs are not allowed`},
		{"IP not allowed", func(id *ServiceIdentity) { id.AllowIPs = []net.IP{net.ParseIP("10.0.0.2")} },
			func(s *csrSpec) { s.ips = []net.IP{net.ParseIP("10.0.0.1")} }, FieldIP, "not an allowed IP; want one of [10.0.0.2]"},
		{"O not allowed", func(id *ServiceIdentity) { id.Subject.Organizations = []string{"Oath Inc."} },
			func(s *csrSpec) { s.o = []string{"Evil Corp"} }, FieldOrganization, `"Evil Corp": not an allowed value`},
		{"OU not allowed", func(id *ServiceIdentity) { id.Subject.OrganizationalUnits = []string{"athenz.k8s"} },
			func(s *csrSpec) { s.ou = []string{"athenz.aws"} }, FieldOrganizationalUnit, "not an allowed value"},
		{"RSA-1024 key", nil, func(s *csrSpec) { s.key = ks.rsa1024 }, FieldPublicKey, "RSA 1024"},
		{"CA:true requested", nil, func(s *csrSpec) {
			s.ext = []pkix.Extension{{Id: oidExtBasicConstraints, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}}
		}, FieldExtension, "CA:true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, spec := svcIdentity(), goodSvc()
			if tt.id != nil {
				tt.id(&id)
			}
			if tt.spec != nil {
				tt.spec(&spec)
			}
			req, err := CheckServiceCSR(makeCSR(t, spec), id)
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			wantCSRError(t, err, tt.field, tt.want)
		})
	}
}

func TestCheckServiceCSRBadIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   func(*ServiceIdentity)
	}{
		{"empty domain", func(id *ServiceIdentity) { id.Domain = "" }},
		{"dotted service", func(id *ServiceIdentity) { id.Service = "a.b" }},
		{"instance id without provider", func(id *ServiceIdentity) { id.Provider = "" }},
		{"instance id with a slash", func(id *ServiceIdentity) { id.InstanceID = "a/b" }},
		{"bad DNS suffix", func(id *ServiceIdentity) { id.DNSSuffixes = []string{"athenz..cloud"} }},
		{"bad hostname", func(id *ServiceIdentity) { id.Hostnames = []string{"evil/host"} }},
		{"trust-domain form without trust domain", func(id *ServiceIdentity) { id.SpiffeForm = athenz.SpiffeFormServiceNamespace }},
		{"role form", func(id *ServiceIdentity) { id.SpiffeForm = athenz.SpiffeFormRole }},
		{"SPIFFE override naming another service", func(id *ServiceIdentity) { id.SpiffeID = "spiffe://sports.prod/sa/web" }},
		{"malformed SPIFFE override", func(id *ServiceIdentity) { id.SpiffeID = "spiffe://x/../y" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := svcIdentity()
			tt.id(&id)
			_, err := CheckServiceCSR(makeCSR(t, goodSvc()), id)
			if !errors.Is(err, ErrBadIdentity) {
				t.Fatalf("error = %v, want ErrBadIdentity", err)
			}
			var ce *CSRError
			if errors.As(err, &ce) {
				t.Errorf("a bad identity is reported as a CSR refusal: %v", err)
			}
		})
	}
}
