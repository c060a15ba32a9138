package ca

import (
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzParseCSR feeds arbitrary bytes to ParseCSR (as PEM) and to the check functions (as
// DER, which skips the signature so that mutations reach them). Nothing may panic, and an
// accepted CSR must be accepted again, identically, when re-encoded.
func FuzzParseCSR(f *testing.F) {
	for _, s := range []csrSpec{goodSvc(), goodRole(), {cn: "x", emails: []string{"a@b"}, ips: []net.IP{net.IPv6loopback}}} {
		der := csrDER(f, s)
		f.Add(der)
		f.Add(pemCSR(der))
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if csr, err := ParseCSR(data); err == nil {
			again, err := ParseCSR(pemCSR(csr.Raw))
			if err != nil || !slices.Equal(again.Raw, csr.Raw) {
				t.Fatalf("accepted CSR not accepted again when re-encoded: %v", err)
			}
		}
		csr, err := x509.ParseCertificateRequest(data)
		if err != nil {
			return
		}
		if req, err := CheckServiceCSR(csr, svcIdentity()); err == nil {
			assertServiceRequest(t, csr, svcIdentity(), req)
		}
		if req, err := CheckRoleCSR(csr, roleIdentity()); err == nil {
			if again, err := CheckRoleCSR(csr, roleIdentity()); err != nil || !reflect.DeepEqual(again, req) {
				t.Fatalf("role CSR checked twice gives %v, %v", again, err)
			}
		}
	})
}

// FuzzCheckServiceCSR builds CSRs from fuzzed names and checks them against a fixed
// identity. Whatever is accepted must name only that identity, be a fixed point (a CSR
// made from the request is accepted as the same request), and issue as exactly that.
func FuzzCheckServiceCSR(f *testing.F) {
	f.Add("sports.prod.api", svcDNS, "pod-1234.instanceid.athenz.athenz.cloud", svcSpiffe, svcInstance, "", "", uint8(0))
	f.Add("SPORTS.prod.api", "*.api.sports-prod.athenz.cloud", "api-0.api.sports.svc.cluster.local", "athenz://hostname/api-0.api.sports.svc.cluster.local", svcInstance, "", "10.1.2.3", uint8(3))
	f.Add("sports.prod.api", "api.sports-prod.evil.com", "", "spiffe://athenz.io/ns/default/sa/sports.prod.api", svcInstance, "a@b", "::1", uint8(4))
	f.Fuzz(func(t *testing.T, cn, dns1, dns2, uri1, uri2, email, ip string, flags uint8) {
		id := svcIdentity()
		id.AllowWildcardDNS = flags&1 != 0
		id.AddSpiffeID = flags&2 != 0
		if flags&4 != 0 {
			id.SpiffeTrustDomain = "athenz.io"
		}
		if flags&8 != 0 {
			id.InstanceID, id.Provider = "", ""
		}
		id.AllowIPs = []net.IP{net.ParseIP("10.1.2.3")}
		spec, ok := fuzzSpec(cn, []string{dns1, dns2}, []string{uri1, uri2}, email, ip)
		if !ok {
			return
		}
		csr, ok := tryCSR(t, spec)
		if !ok {
			return
		}
		req, err := CheckServiceCSR(csr, id)
		if err != nil {
			if _, isCSR := err.(*CSRError); !isCSR {
				t.Fatalf("refusal is not a *CSRError: %v", err)
			}
			return
		}
		assertServiceRequest(t, csr, id, req)
	})
}

// FuzzCheckRoleCSR is FuzzCheckServiceCSR for role certificates.
func FuzzCheckRoleCSR(f *testing.F) {
	f.Add("sports.prod:role.readers", "", roleSpiffe, rolePrincipal, "athenz://instanceid/athenz.aws/i-0abc", "", uint8(0))
	f.Add("sports.prod:role.readers", "api.weather.athenz.cloud", rolePrincipal, "athenz://proxyuser/gateway.proxy", "", "weather.api@athenz.cloud", uint8(1))
	f.Fuzz(func(t *testing.T, cn, dns, uri1, uri2, uri3, email string, flags uint8) {
		id := roleIdentity()
		if flags&1 != 0 {
			id.ProxyUser = "gateway.proxy"
		}
		id.AddSpiffeID = flags&2 != 0
		spec, ok := fuzzSpec(cn, []string{dns}, []string{uri1, uri2, uri3}, email, "")
		if !ok {
			return
		}
		csr, ok := tryCSR(t, spec)
		if !ok {
			return
		}
		req, err := CheckRoleCSR(csr, id)
		if err != nil {
			if _, isCSR := err.(*CSRError); !isCSR {
				t.Fatalf("refusal is not a *CSRError: %v", err)
			}
			return
		}
		if req.CommonName != "sports.prod:role.readers" {
			t.Fatalf("accepted CN %q", req.CommonName)
		}
		remade, ok := tryCSR(t, specFromRequest(req))
		if !ok {
			t.Fatalf("cannot rebuild a CSR from %+v", req)
		}
		again, err := CheckRoleCSR(remade, id)
		req.PublicKey, again.PublicKey = nil, nil
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("not a fixed point:\n%+v\n%+v (%v)", req, again, err)
		}
		is, err := mustSharedCA(t).Issue(withKey(req, csr))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := athenz.PrincipalFromCertificate(is.Certificate)
		if err != nil || ci.Principal != "weather.api" || !ci.IsRoleCertificate() {
			t.Fatalf("issued role certificate reads as %+v, %v", ci, err)
		}
	})
}

// fuzzSpec turns fuzzed strings into a CSR spec, dropping empty names.
func fuzzSpec(cn string, dns, uris []string, email, ip string) (csrSpec, bool) {
	s := csrSpec{cn: cn}
	for _, d := range dns {
		if d != "" {
			s.dns = append(s.dns, d)
		}
	}
	for _, u := range uris {
		if u != "" {
			s.uris = append(s.uris, u)
		}
	}
	if email != "" {
		s.emails = []string{email}
	}
	if ip != "" {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return s, false
		}
		s.ips = []net.IP{parsed}
	}
	return s, true
}

// tryCSR builds and parses a CSR, reporting false when crypto/x509 cannot encode the
// names (invalid UTF-8, unparsable URIs).
func tryCSR(t *testing.T, s csrSpec) (*x509.CertificateRequest, bool) {
	t.Helper()
	key := testKeys().p256[0]
	tmpl := &x509.CertificateRequest{DNSNames: s.dns, EmailAddresses: s.emails, IPAddresses: s.ips}
	tmpl.Subject.CommonName = s.cn
	for _, u := range s.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, false
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, false
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, false
	}
	return csr, true
}

// specFromRequest is the CSR a client would send to get exactly req.
func specFromRequest(req IssueRequest) csrSpec {
	s := csrSpec{cn: req.CommonName, dns: req.DNSNames, emails: req.EmailAddresses, ips: req.IPAddresses}
	for _, u := range req.URIs {
		s.uris = append(s.uris, u.String())
	}
	return s
}

func withKey(req IssueRequest, csr *x509.CertificateRequest) IssueRequest {
	req.PublicKey = csr.PublicKey
	return req
}

// assertServiceRequest checks an accepted service request against id independently of
// the implementation, then re-checks and issues it.
func assertServiceRequest(t *testing.T, csr *x509.CertificateRequest, id ServiceIdentity, req IssueRequest) {
	t.Helper()
	if req.CommonName != "sports.prod.api" {
		t.Fatalf("accepted CN %q", req.CommonName)
	}
	for _, d := range req.DNSNames {
		ok := d == "api-0.api.sports.svc.cluster.local"
		for _, sfx := range []string{"athenz.cloud", "svc.example.com"} {
			ok = ok || d == "api.sports-prod."+sfx || (id.AllowWildcardDNS && d == "*.api.sports-prod."+sfx) ||
				(id.InstanceID != "" && d == "pod-1234.instanceid.athenz."+sfx)
		}
		if !ok {
			t.Fatalf("accepted DNS SAN %q", d)
		}
	}
	spiffes := 0
	for _, u := range req.URIs {
		s := u.String()
		switch {
		case strings.HasPrefix(s, "spiffe:"):
			spiffes++
			if p, err := athenz.ParseSpiffeID(s); err != nil || p.Principal() != "sports.prod.api" {
				t.Fatalf("accepted SPIFFE ID %q", s)
			}
		case s == svcInstance && id.InstanceID != "":
		case s == "athenz://hostname/api-0.api.sports.svc.cluster.local":
		default:
			t.Fatalf("accepted URI %q", s)
		}
	}
	if spiffes > 1 || len(req.EmailAddresses) > 0 {
		t.Fatalf("accepted %d SPIFFE IDs and emails %v", spiffes, req.EmailAddresses)
	}
	for _, ip := range req.IPAddresses {
		if !ip.Equal(net.ParseIP("10.1.2.3")) {
			t.Fatalf("accepted IP %v", ip)
		}
	}
	again, err := CheckServiceCSR(csr, id)
	if err != nil || !reflect.DeepEqual(again, req) {
		t.Fatalf("checked twice: %+v, %v", again, err)
	}
	remade, ok := tryCSR(t, specFromRequest(req))
	if !ok {
		t.Fatalf("cannot rebuild a CSR from %+v", req)
	}
	fixed, err := CheckServiceCSR(remade, id)
	if err != nil {
		t.Fatalf("the CSR of an accepted request is refused: %v", err)
	}
	fixed.PublicKey = req.PublicKey
	if !reflect.DeepEqual(fixed, req) {
		t.Fatalf("not a fixed point:\n%+v\n%+v", req, fixed)
	}
	is, err := mustSharedCA(t).Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	c := is.Certificate
	if !slices.Equal(c.DNSNames, req.DNSNames) || len(c.URIs) != len(req.URIs) || len(c.IPAddresses) != len(req.IPAddresses) || len(c.EmailAddresses) != 0 {
		t.Fatalf("issued SANs %v %v %v differ from the request", c.DNSNames, c.URIs, c.IPAddresses)
	}
	ci, err := athenz.PrincipalFromCertificate(c)
	if err != nil || ci.Principal != "sports.prod.api" {
		t.Fatalf("issued certificate reads as %+v, %v", ci, err)
	}
}
