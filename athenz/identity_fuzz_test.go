package athenz_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzParseSpiffeID: no panic, and every accepted ID is rebuilt byte for byte by the
// builders from its parsed fields, with valid Athenz names.
func FuzzParseSpiffeID(f *testing.F) {
	for _, s := range []string{
		"spiffe://sports/sa/api", "spiffe://athenz.io/ns/prod/sa/sports.prod.api", "spiffe://sports/ra/readers",
		"spiffe://athenz.io/ns/sports/ra/readers", "spiffe://cluster.local/ns/default/sa/bookinfo",
		"spiffe://sports/sa/../ra/x", "spiffe://td/ns/a/sa/.b", "spiffe://A/sa/b", "spiffe://td/ns//sa/a.b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := athenz.ParseSpiffeID(s)
		if err != nil {
			return
		}
		if rebuilt := rebuildSpiffeID(id); rebuilt != s {
			t.Fatalf("%q parsed as %+v, rebuilt as %q", s, id, rebuilt)
		}
		if id.Form != athenz.SpiffeFormIstio && !athenz.IsDomainName(id.Domain) {
			t.Fatalf("%q: domain %q", s, id.Domain)
		}
		if p := id.Principal(); p != "" && !athenz.IsServiceName(p) {
			t.Fatalf("%q: principal %q", s, p)
		}
	})
}

// FuzzAthenzURIs runs one string through every athenz:// and name parser: no panic, and
// whatever parses is rebuilt exactly by the matching builder.
func FuzzAthenzURIs(f *testing.F) {
	for _, s := range []string{
		"athenz://instanceid/sys.auth.zts/i-0abc", "athenz://instanceid/p/..", "athenz://role/sports/readers",
		"athenz://role/sports/../admin", "athenz://principal/media.api", "sports:role.readers",
		"i-1.instanceid.athenz.cloud", "athenz://instanceid/p/a%2Fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, id, err := athenz.ParseInstanceIDURI(s); err == nil && athenz.InstanceIDURI(p, id) != s {
			t.Fatalf("instance id URI %q read as %q, %q", s, p, id)
		}
		if d, r, err := athenz.ParseRoleURI(s); err == nil && athenz.RoleURI(d, r) != s {
			t.Fatalf("role URI %q read as %q, %q", s, d, r)
		}
		if p, err := athenz.ParsePrincipalURI(s); err == nil && (athenz.PrincipalURI(p) != s || !athenz.IsServiceName(p)) {
			t.Fatalf("principal URI %q read as %q", s, p)
		}
		if d, r, ok := athenz.ParseRoleCertCN(s); ok && athenz.JoinRoleName(d, r) != s {
			t.Fatalf("role CN %q read as %q, %q", s, d, r)
		}
		if id, ok := athenz.ParseInstanceIDDNSName(s); ok && (id == "" || len(id) >= len(s)) {
			t.Fatalf("instance DNS name %q read as %q", s, id)
		}
	})
}

// FuzzPrincipalFromCertificate issues certificates with fuzzed names (skipping those Go
// cannot encode) and requires every identity read to be well formed.
func FuzzPrincipalFromCertificate(f *testing.F) {
	f.Add("sports.api", "spiffe://sports/sa/api", "athenz://instanceid/p/i", "", "")
	f.Add("sports:role.readers", "spiffe://sports/ra/readers", "athenz://principal/media.api", "media.api@x", "")
	f.Add("sports:role.readers", "athenz://role/sports/../admin", "", "media.api@x", "")
	f.Add("", "spiffe://cluster.local/ns/default/sa/x", "", "", "a.instanceid.athenz.x")
	f.Add("sports.api", "spiffe://sports/sa/api", "spiffe://sports/sa/web", "", "")
	f.Fuzz(func(t *testing.T, cn, uri1, uri2, email, dns string) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
		for _, s := range []string{uri1, uri2} {
			if s == "" {
				continue
			}
			u, err := url.Parse(s)
			if err != nil {
				return
			}
			tmpl.URIs = append(tmpl.URIs, u)
		}
		if email != "" {
			tmpl.EmailAddresses = []string{email}
		}
		if dns != "" {
			tmpl.DNSNames = []string{dns}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, testP256().Public(), testP256())
		if err != nil {
			return
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := athenz.PrincipalFromCertificate(cert)
		if err != nil {
			return
		}
		if !athenz.IsDomainName(id.Domain) || !athenz.IsSimpleName(id.Service) || id.Principal != athenz.Principal(id.Domain, id.Service) {
			t.Fatalf("identity %+v from CN %q, URIs %q %q, email %q", id, cn, uri1, uri2, email)
		}
		for _, r := range id.Roles {
			if !athenz.IsDomainName(r.Domain) || !athenz.IsEntityName(r.Role) {
				t.Fatalf("role %+v", r)
			}
		}
		if id.SpiffeID != "" {
			if _, err := athenz.ParseSpiffeID(id.SpiffeID); err != nil {
				t.Fatalf("kept an invalid SPIFFE ID: %v", err)
			}
		}
	})
}
