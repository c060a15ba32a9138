package sds

import (
	"crypto/x509"
	"slices"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// spiffeConfig returns the SPIFFE validator config of a validation-context secret, nil if
// it is a trusted_ca one.
func spiffeConfig(t *testing.T, s *tlsv3.Secret) *tlsv3.SPIFFECertValidatorConfig {
	t.Helper()
	vc := s.GetValidationContext()
	if vc == nil {
		t.Fatalf("%s is not a validation context", s.GetName())
	}
	cv := vc.GetCustomValidatorConfig()
	if cv == nil {
		if len(vc.GetTrustedCa().GetInlineBytes()) == 0 {
			t.Fatalf("%s has neither trusted_ca nor a custom validator", s.GetName())
		}
		return nil
	}
	if cv.GetName() != SPIFFEValidatorName {
		t.Fatalf("validator %s", cv.GetName())
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	if err := cv.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestValidationModes(t *testing.T) {
	const sia = "spiffe://sia.example/ns/athenz/ca/default"
	ca1, ca2 := newCA(t), newCA(t)
	// versions are the version_info of the same bundle in each mode: they must differ,
	// so that an agent restarted in another mode never tells a client that its copy in
	// the old encoding is current.
	versions := map[string]ValidationMode{}
	for _, tc := range []struct {
		mode ValidationMode
		// want is the SPIFFE trust domains per name; nil means trusted_ca.
		want map[string][]string
		// missing names are left out.
		missing []string
	}{
		{ValidationAuto, map[string][]string{NameRootCA: nil, sia: {"sia.example", td}}, nil},
		{ValidationTrustedCA, map[string][]string{NameRootCA: nil, sia: nil}, nil},
		{ValidationSPIFFE, map[string][]string{NameRootCA: {td}, sia: {"sia.example", td}}, nil},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newEnv(t, envOptions{cfg: Config{Validation: tc.mode}})
			e.setBundle(ca1.Cert, ca2.Cert) // a CA rotation in progress
			r, err := sdstest.Fetch(streamCtx(t), e.dial(), NameRootCA, sia)
			if err != nil {
				t.Fatal(err)
			}
			if m, dup := versions[r.GetVersionInfo()]; dup {
				t.Fatalf("modes %s and %s give the same version_info", m, tc.mode)
			}
			versions[r.GetVersionInfo()] = tc.mode
			got := byName(t, r.GetResources())
			both := string(rootsPEM(ca1.Cert, ca2.Cert))
			for name, tds := range tc.want {
				s := got[name]
				if s == nil {
					t.Fatalf("%s missing", name)
				}
				cfg := spiffeConfig(t, s)
				if tds == nil {
					if cfg != nil || string(s.GetValidationContext().GetTrustedCa().GetInlineBytes()) != both {
						t.Fatalf("%s: want trusted_ca with both roots, got %v", name, s)
					}
					continue
				}
				if cfg == nil {
					t.Fatalf("%s: want the SPIFFE validator, got trusted_ca", name)
				}
				var names []string
				for _, d := range cfg.GetTrustDomains() {
					names = append(names, d.GetName())
					if string(d.GetTrustBundle().GetInlineBytes()) != both {
						t.Fatalf("%s: trust domain %s lacks a root", name, d.GetName())
					}
				}
				if !slices.Equal(names, tds) {
					t.Fatalf("%s: trust domains %v, want %v", name, names, tds)
				}
			}
		})
	}
}

func TestSPIFFEModeWithoutTrustDomainsLeavesROOTCAOut(t *testing.T) {
	e := newEnv(t, envOptions{cfg: Config{Validation: ValidationSPIFFE}})
	if err := e.cache.SetBundle(&Bundle{Roots: []*x509.Certificate{e.ca.Cert}}); err != nil {
		t.Fatal(err)
	}
	e.issue(idAPI)
	r, err := sdstest.Fetch(streamCtx(t), e.dial(), NameRootCA, NameDefault)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(t, r.GetResources())
	if len(got) != 1 || got[NameDefault] == nil {
		t.Fatalf("got %v, want default only", got)
	}
}

func TestParseResourceName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want resourceName
	}{
		{"default", resourceName{kind: kindDefault}},
		{"ROOTCA", resourceName{kind: kindRootCA}},
		{"rootca", resourceName{}},
		{"spiffe://sports/sa/api", resourceName{kind: kindService, principal: "sports.api"}},
		{"spiffe://athenz.test/ns/prod/sa/sports.api", resourceName{kind: kindService, principal: "sports.api"}},
		{"spiffe://athenz.test/ns/prod/sa/sports.sub.api", resourceName{kind: kindService, principal: "sports.sub.api"}},
		{"spiffe://cluster.local/ns/prod/sa/api-sa", resourceName{kind: kindIstio}},
		{"spiffe://athenz.test/ns/athenz/ca/default", resourceName{kind: kindSIACA, trustDomain: "athenz.test"}},
		{"spiffe://athenz.test/ns/athenz/ca/other", resourceName{}},
		{"spiffe://athenz.test/ns/kube/ca/default", resourceName{}},
		{"athenz://role/sports/readers", resourceName{kind: kindRole, roleDomain: "sports", role: "readers"}},
		{"spiffe://sports/ra/readers", resourceName{kind: kindRole, roleDomain: "sports", role: "readers"}},
		{"spiffe://athenz.test/ns/sports/ra/readers", resourceName{kind: kindRole, roleDomain: "sports", role: "readers"}},
		{"athenz://role/sports", resourceName{}},
		{"athenz://role/sports/readers?x=1", resourceName{}},
		{"spiffe://sports/sa/api/../web", resourceName{}},
		{"spiffe://Sports/sa/api", resourceName{}},
		{"", resourceName{}},
		{"file:///etc/passwd", resourceName{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseResourceName(tc.name)
			if got.kind == kindUnknown && got.why == "" {
				t.Fatal("unknown without a reason")
			}
			got.why = ""
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseValidationMode(t *testing.T) {
	for _, m := range []ValidationMode{ValidationAuto, ValidationTrustedCA, ValidationSPIFFE} {
		got, err := ParseValidationMode(m.String())
		if err != nil || got != m {
			t.Fatalf("%s: %v %v", m, got, err)
		}
	}
	if _, err := ParseValidationMode("tls"); err == nil {
		t.Fatal("bad mode accepted")
	}
}

func TestSecretMemoBounded(t *testing.T) {
	var m secretMemo
	builds := 0
	build := func() (*anypb.Any, error) { builds++; return &anypb.Any{}, nil }
	for i := range maxMemo + 10 {
		if _, err := m.get(memoKey{name: string(rune(i))}, 1, build); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.m) > maxMemo {
		t.Fatalf("memo holds %d entries", len(m.m))
	}
	before := builds
	m.get(memoKey{name: "x"}, 2, build)
	m.get(memoKey{name: "x"}, 2, build)
	if builds != before+1 {
		t.Fatal("same version built twice")
	}
	m.get(memoKey{name: "x"}, 3, build)
	if builds != before+2 {
		t.Fatal("new version not rebuilt")
	}
}
