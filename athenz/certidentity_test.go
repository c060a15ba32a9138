package athenz_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// certSpec describes a test certificate's names.
type certSpec struct {
	cn       string
	extraCNs []string
	uris     []string
	dns      []string
	emails   []string
}

// makeCert issues a certificate for spec, self-signed with a test key, and returns it as
// a peer would see it (parsed from DER).
func makeCert(t testing.TB, spec certSpec) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: spec.cn, Organization: []string{"Athenz"}},
		NotBefore: testNow, NotAfter: testNow.Add(time.Hour), DNSNames: spec.dns, EmailAddresses: spec.emails,
	}
	if len(spec.extraCNs) > 0 {
		// ExtraNames override the CommonName field, so list every CN there.
		for _, cn := range append([]string{spec.cn}, spec.extraCNs...) {
			tmpl.Subject.ExtraNames = append(tmpl.Subject.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn})
		}
	}
	for _, s := range spec.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, testP256().Public(), testP256())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestPrincipalFromCertificate(t *testing.T) {
	const (
		spiffe     = "spiffe://sports.prod/sa/api"
		tdSpiffe   = "spiffe://athenz.io/ns/prod/sa/sports.prod.api"
		instance   = "athenz://instanceid/sys.auth.zts/i-0abc"
		roleSpiffe = "spiffe://sports/ra/readers"
	)
	svc := func(id athenz.CertIdentity) athenz.CertIdentity {
		id.Principal, id.Domain, id.Service = "sports.prod.api", "sports.prod", "api"
		return id
	}
	role := func(id athenz.CertIdentity, roles ...athenz.RoleRef) athenz.CertIdentity {
		id.Principal, id.Domain, id.Service = "media.api", "media", "api"
		id.Roles = append([]athenz.RoleRef{{Domain: "sports", Role: "readers"}}, roles...)
		return id
	}
	parsed := func(s string) athenz.SpiffeIdentity {
		p, err := athenz.ParseSpiffeID(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		spec    certSpec
		want    athenz.CertIdentity
		wantErr string // "" means success
	}{
		{"service cert as ZTS issues it",
			certSpec{cn: "sports.prod.api", uris: []string{spiffe, instance, "athenz://hostname/h1"}, dns: []string{"api.sports-prod.athenz.cloud"}},
			svc(athenz.CertIdentity{InstanceProvider: "sys.auth.zts", InstanceID: "i-0abc", SpiffeID: spiffe, Spiffe: parsed(spiffe)}), ""},
		{"trust domain spiffe", certSpec{cn: "sports.prod.api", uris: []string{tdSpiffe}},
			svc(athenz.CertIdentity{SpiffeID: tdSpiffe, Spiffe: parsed(tdSpiffe)}), ""},
		{"no spiffe, legacy instance dns", certSpec{cn: "sports.prod.api", dns: []string{"api.sports-prod.athenz.cloud", "i-9.instanceid.athenz.athenz.cloud"}},
			svc(athenz.CertIdentity{InstanceID: "i-9"}), ""},
		{"istio spiffe beside a CN", certSpec{cn: "sports.prod.api", uris: []string{"spiffe://cluster.local/ns/prod/sa/api"}},
			svc(athenz.CertIdentity{SpiffeID: "spiffe://cluster.local/ns/prod/sa/api", Spiffe: parsed("spiffe://cluster.local/ns/prod/sa/api")}), ""},
		{"matching principal uri", certSpec{cn: "sports.prod.api", uris: []string{"athenz://principal/sports.prod.api"}}, svc(athenz.CertIdentity{}), ""},
		{"service email ignored", certSpec{cn: "sports.prod.api", emails: []string{"other.svc@athenz.cloud", "x@y"}}, svc(athenz.CertIdentity{}), ""},
		{"upper case CN, lower case spiffe", certSpec{cn: "Sports.Prod.api", uris: []string{spiffe}},
			athenz.CertIdentity{Principal: "Sports.Prod.api", Domain: "Sports.Prod", Service: "api", SpiffeID: spiffe, Spiffe: parsed(spiffe)}, ""},
		{"no CN, athenz spiffe", certSpec{uris: []string{spiffe}}, svc(athenz.CertIdentity{SpiffeID: spiffe, Spiffe: parsed(spiffe)}), ""},
		{"role cert with email", certSpec{cn: "sports:role.readers", emails: []string{"media.api@athenz.cloud"}}, role(athenz.CertIdentity{}), ""},
		{"role cert with principal uri", certSpec{cn: "sports:role.readers", uris: []string{roleSpiffe, "athenz://principal/media.api", instance}},
			role(athenz.CertIdentity{SpiffeID: roleSpiffe, Spiffe: parsed(roleSpiffe), InstanceProvider: "sys.auth.zts", InstanceID: "i-0abc"}), ""},
		{"role cert, both agree, extra roles", certSpec{cn: "sports:role.readers", emails: []string{"media.api@athenz.cloud"},
			uris: []string{"athenz://principal/media.api", "athenz://role/sports/readers", "athenz://role/sports/writers", "athenz://role/media/admin"}},
			role(athenz.CertIdentity{}, athenz.RoleRef{Domain: "sports", Role: "writers"}, athenz.RoleRef{Domain: "media", Role: "admin"}), ""},
		{"trust domain role spiffe", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x"}, uris: []string{"spiffe://athenz.io/ns/sports/ra/readers"}},
			role(athenz.CertIdentity{SpiffeID: "spiffe://athenz.io/ns/sports/ra/readers", Spiffe: parsed("spiffe://athenz.io/ns/sports/ra/readers")}), ""},

		{"two spiffe uris", certSpec{cn: "sports.prod.api", uris: []string{spiffe, "spiffe://sports.prod/sa/web"}}, athenz.CertIdentity{}, "2 SPIFFE URIs"},
		{"spiffe names another service", certSpec{cn: "sports.prod.api", uris: []string{"spiffe://sports.prod/sa/admin"}}, athenz.CertIdentity{}, "names \"sports.prod.admin\""},
		{"spiffe in another domain", certSpec{cn: "sports.prod.api", uris: []string{"spiffe://athenz.io/ns/prod/sa/sys.auth.api"}}, athenz.CertIdentity{}, "names \"sys.auth.api\""},
		{"unknown spiffe form", certSpec{cn: "sports.prod.api", uris: []string{"spiffe://athenz/domain1/service1"}}, athenz.CertIdentity{}, "not an Athenz or Istio form"},
		{"spiffe with escape", certSpec{cn: "sports.prod.api", uris: []string{"spiffe://sports.prod/sa/a%2Fb"}}, athenz.CertIdentity{}, "SPIFFE ID"},
		{"role spiffe in service cert", certSpec{cn: "sports.prod.api", uris: []string{roleSpiffe}}, athenz.CertIdentity{}, "role SPIFFE ID"},
		{"role uri in service cert", certSpec{cn: "sports.prod.api", uris: []string{"athenz://role/sports/admin"}}, athenz.CertIdentity{}, "athenz://role/ URI in a service certificate"},
		{"principal uri disagrees with CN", certSpec{cn: "sports.prod.api", uris: []string{"athenz://principal/sys.auth.zts"}}, athenz.CertIdentity{}, "principal URI names"},
		{"two principal uris", certSpec{cn: "sports:role.readers", uris: []string{"athenz://principal/media.api", "athenz://principal/media.web"}}, athenz.CertIdentity{}, "2 athenz://principal/ URIs"},
		{"two common names", certSpec{cn: "sports.prod.api", extraCNs: []string{"sys.auth.zts"}}, athenz.CertIdentity{}, "2 common names"},
		{"CN with space", certSpec{cn: "sports.prod api"}, athenz.CertIdentity{}, "invalid character ' '"},
		{"CN with traversal", certSpec{cn: "sports/../sys.auth.zts"}, athenz.CertIdentity{}, "invalid character '/'"},
		{"CN without dot", certSpec{cn: "sports"}, athenz.CertIdentity{}, "want <domain>.<service>"},
		{"CN with empty part", certSpec{cn: "sports..api"}, athenz.CertIdentity{}, "not followed by a name part"},
		{"group CN", certSpec{cn: "sports:group.admins", emails: []string{"media.api@x"}}, athenz.CertIdentity{}, "role CN"},
		{"role CN with bad role", certSpec{cn: "sports:role.read ers", emails: []string{"media.api@x"}}, athenz.CertIdentity{}, "role CN"},
		{"role cert, email and uri disagree", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x"}, uris: []string{"athenz://principal/sys.auth.zts"}}, athenz.CertIdentity{}, "email SAN names"},
		{"role cert, two emails", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x", "media.web@x"}}, athenz.CertIdentity{}, "2 email SANs"},
		{"role cert, no principal", certSpec{cn: "sports:role.readers"}, athenz.CertIdentity{}, "names no principal"},
		{"role cert, bad email principal", certSpec{cn: "sports:role.readers", emails: []string{"media@x"}}, athenz.CertIdentity{}, "want <domain>.<service>"},
		{"role cert, other role spiffe", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x"}, uris: []string{"spiffe://sports/ra/admin"}}, athenz.CertIdentity{}, "role other than the CN's"},
		{"role cert, service spiffe", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x"}, uris: []string{spiffe}}, athenz.CertIdentity{}, "not a role SPIFFE ID"},
		{"role uri traversal", certSpec{cn: "sports:role.readers", emails: []string{"media.api@x"}, uris: []string{"athenz://role/sports/../admin"}}, athenz.CertIdentity{}, "entity name"},
		{"instance id traversal", certSpec{cn: "sports.prod.api", uris: []string{"athenz://instanceid/sys.auth.zts/../x"}}, athenz.CertIdentity{}, "invalid character '/'"},
		{"instance id escape", certSpec{cn: "sports.prod.api", uris: []string{"athenz://instanceid/p/a%2Fb"}}, athenz.CertIdentity{}, "want athenz://instanceid/"},
		{"two instance uris", certSpec{cn: "sports.prod.api", uris: []string{instance, "athenz://instanceid/sys.auth.zts/i-0def"}}, athenz.CertIdentity{}, "2 athenz://instanceid/ URIs"},
		{"conflicting instance dns names", certSpec{cn: "sports.prod.api", dns: []string{"a.instanceid.athenz.x", "b.instanceid.athenz.x"}}, athenz.CertIdentity{}, "two instance id DNS names"},
		{"no CN, no spiffe", certSpec{dns: []string{"api.sports-prod.athenz.cloud"}}, athenz.CertIdentity{}, "no common name"},
		{"no CN, role spiffe", certSpec{uris: []string{roleSpiffe}}, athenz.CertIdentity{}, "no common name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := athenz.PrincipalFromCertificate(makeCert(t, tc.spec))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, athenz.ErrInvalidIdentity) {
					t.Errorf("error %v does not wrap ErrInvalidIdentity", err)
				}
				if !reflect.DeepEqual(got, athenz.CertIdentity{}) {
					t.Errorf("identity %+v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if got.IsRoleCertificate() != (len(tc.want.Roles) > 0) {
				t.Error("IsRoleCertificate disagrees with Roles")
			}
		})
	}
	if _, err := athenz.PrincipalFromCertificate(nil); !errors.Is(err, athenz.ErrInvalidIdentity) {
		t.Errorf("nil certificate: %v", err)
	}
}

func TestPrincipalFromCertificateIstio(t *testing.T) {
	const istio = "spiffe://cluster.local/ns/default/sa/bookinfo"
	id, err := athenz.PrincipalFromCertificate(makeCert(t, certSpec{uris: []string{istio}, dns: []string{"bookinfo.default.svc"}}))
	if !errors.Is(err, athenz.ErrUnmappedSpiffeID) || !errors.Is(err, athenz.ErrInvalidIdentity) {
		t.Fatalf("error %v, want ErrUnmappedSpiffeID", err)
	}
	if id.Principal != "" || id.SpiffeID != istio || id.Spiffe.Form != athenz.SpiffeFormIstio || id.Spiffe.ServiceAccount != "bookinfo" || id.Spiffe.Namespace != "default" {
		t.Errorf("identity %+v", id)
	}
}
