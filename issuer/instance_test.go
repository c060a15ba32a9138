package issuer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

func TestRegisterWithNToken(t *testing.T) {
	e := newEnv(t)
	id, r := e.registerNToken(t, "sports.api", "i-1")
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if loc := r.header.Get("Location"); loc != "/zts/v1/instance/sys.auth.zts/sports/api/i-1" {
		t.Errorf("Location %q", loc)
	}
	if id.Provider != "sys.auth.zts" || id.Name != "sports.api" || id.InstanceID != "i-1" || id.X509CertificateSigner == "" {
		t.Errorf("identity %+v", id)
	}
	cert := parseCert(t, id.X509Certificate)
	if cert.Subject.CommonName != "sports.api" || len(cert.URIs) != 2 {
		t.Errorf("certificate CN %q URIs %v", cert.Subject.CommonName, cert.URIs)
	}
	if cert.NotAfter.Sub(cert.NotBefore) > 25*time.Hour {
		t.Errorf("default validity %s, want 24h", cert.NotAfter.Sub(cert.NotBefore))
	}
	cur, err := e.store.CurrentCertificate(context.Background(), "sys.auth.zts", "sports", "api", "i-1")
	if err != nil || cur.Serial != store.SerialString(cert.SerialNumber) {
		t.Fatalf("store: %+v %v", cur, err)
	}
	// A certificate registered with an n-token cannot be refreshed (as in Athenz).
	key := serviceKey("sports.api")
	rr := e.call(t, e.client(tlsCert(t, id.X509Certificate, key)), "POST", "/instance/sys.auth.zts/sports/api/i-1",
		issuer.InstanceRefreshInformation{CSR: serviceCSR(t, key, "sports", "api", "sys.auth.zts", "i-1")})
	if rr.status != 403 || !strings.Contains(rr.errorBody(t).Message, "cannot be refreshed") {
		t.Fatalf("refresh of an n-token registration: %d %s", rr.status, rr.body)
	}
	// Every serial form: a serial whose hex starts with 0 must be refused too.
	for i := range 32 {
		inst := fmt.Sprintf("n-%d", i)
		id, r := e.registerNToken(t, "sports.api", inst)
		if r.status != 201 {
			t.Fatalf("register %s: %d %s", inst, r.status, r.body)
		}
		rr := e.call(t, e.client(tlsCert(t, id.X509Certificate, key)), "POST", "/instance/sys.auth.zts/sports/api/"+inst,
			issuer.InstanceRefreshInformation{CSR: serviceCSR(t, key, "sports", "api", "sys.auth.zts", inst)})
		if rr.status != 403 {
			t.Fatalf("refresh of n-token registration %s (serial %x): %d", inst, parseCert(t, id.X509Certificate).SerialNumber, rr.status)
		}
	}
	if !strings.Contains(e.log.String(), `"msg":"issued"`) || !strings.Contains(e.log.String(), `"msg":"refused"`) {
		t.Errorf("audit lines missing:\n%s", e.log.String())
	}
}

func TestRegisterTokenFlow(t *testing.T) {
	e := newEnv(t)
	ops := e.client(e.serviceCert(t, "sports.ops"))
	// sports.ops may update sports services: it gets a register token for sports.web.
	r := e.call(t, ops, "GET", "/instance/sys.auth.zts/sports/web/pod-1/token", nil)
	if r.status != 200 {
		t.Fatalf("register token: %d %s", r.status, r.body)
	}
	var rt issuer.InstanceRegisterToken
	r.decode(t, &rt)
	if rt.Provider != "sys.auth.zts" || rt.Domain != "sports" || rt.Service != "web" || rt.AttestationData == "" {
		t.Fatalf("token %+v", rt)
	}
	// The workload registers with a fresh key.
	key := newP256(t)
	reg := issuer.InstanceRegisterInformation{Provider: "sys.auth.zts", Domain: "sports", Service: "web",
		AttestationData: rt.AttestationData, CSR: serviceCSR(t, key, "sports", "web", "sys.auth.zts", "pod-1")}
	r = e.call(t, e.client(nil), "POST", "/instance", reg)
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var id issuer.InstanceIdentity
	r.decode(t, &id)
	first := tlsCert(t, id.X509Certificate, key)

	// Replay: refused, nothing issued.
	before := e.store.puts.Load()
	r = e.call(t, e.client(nil), "POST", "/instance", reg)
	if r.status != 403 || !strings.Contains(r.errorBody(t).Message, "replayed") {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	if e.store.puts.Load() != before {
		t.Fatal("a replayed token issued a certificate")
	}

	// Refresh with the current certificate: a new one, recorded as current.
	refresh := func(c *issuerCert, instance string) response {
		return e.call(t, e.client(c.cert), "POST", "/instance/sys.auth.zts/sports/web/"+instance,
			issuer.InstanceRefreshInformation{CSR: serviceCSR(t, c.key, "sports", "web", "sys.auth.zts", instance)})
	}
	r = refresh(&issuerCert{first, key}, "pod-1")
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	var id2 issuer.InstanceIdentity
	r.decode(t, &id2)
	second := tlsCert(t, id2.X509Certificate, key)
	cur, err := e.store.CurrentCertificate(context.Background(), "sys.auth.zts", "sports", "web", "pod-1")
	if err != nil || cur.Serial != store.SerialString(second.Leaf.SerialNumber) || cur.PreviousSerial != store.SerialString(first.Leaf.SerialNumber) {
		t.Fatalf("store after refresh: %+v %v", cur, err)
	}
	// The old certificate is no longer current.
	if r = refresh(&issuerCert{first, key}, "pod-1"); r.status != 403 {
		t.Fatalf("refresh with the old certificate: %d %s", r.status, r.body)
	}
	// Another instance id than the certificate's.
	if r = refresh(&issuerCert{second, key}, "pod-2"); r.status != 403 {
		t.Fatalf("refresh for another instance: %d %s", r.status, r.body)
	}
	// Someone else's certificate.
	api, _ := e.registerNToken(t, "sports.api", "pod-9")
	other := &issuerCert{tlsCert(t, api.X509Certificate, serviceKey("sports.api")), serviceKey("sports.api")}
	if r = refresh(other, "pod-1"); r.status != 403 {
		t.Fatalf("refresh with another service's certificate: %d %s", r.status, r.body)
	}
	// Revoke, then refresh is refused.
	r = e.call(t, ops, "DELETE", "/instance/sys.auth.zts/sports/web/pod-1", nil)
	if r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r = refresh(&issuerCert{second, key}, "pod-1"); r.status != 403 {
		t.Fatalf("refresh after revocation: %d %s", r.status, r.body)
	}
}

// issuerCert is a client certificate and its key.
type issuerCert struct {
	cert *tlsCertificate
	key  cryptoSigner
}

func TestRegisterTokenAccess(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		caller string
		path   string
		want   int
	}{
		{"the service itself", "sports.web", "/instance/sys.auth.zts/sports/web/i/token", 200},
		{"an admin of the service", "sports.ops", "/instance/sys.auth.zts/sports/api/i/token", 200},
		{"no update permission", "sports.api", "/instance/sys.auth.zts/sports/web/i/token", 403},
		{"provider not allowed to launch", "weather.temp", "/instance/sys.auth.zts/weather/temp/i/token", 403},
		{"provider without register tokens", "sports.web", "/instance/" + joinProvider + "/sports/web/i/token", 403},
		{"unknown domain", "sports.ops", "/instance/sys.auth.zts/nosuch/web/i/token", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, e.client(e.serviceCert(t, tc.caller)), "GET", tc.path, nil)
			if r.status != tc.want {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.want)
			}
			if tc.want != 200 {
				r.errorBody(t)
			}
		})
	}
	r := e.call(t, e.client(nil), "GET", "/instance/sys.auth.zts/sports/web/i/token", nil)
	if r.status != 401 {
		t.Fatalf("anonymous: %d %s", r.status, r.body)
	}
}

func TestRegisterJoinToken(t *testing.T) {
	e := newEnv(t)
	secret, hash, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateJoinToken(context.Background(), store.JoinToken{IDHash: hash, Domain: "sports", Service: "web", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	key := newP256(t)
	reg := issuer.InstanceRegisterInformation{Provider: joinProvider, Domain: "sports", Service: "web",
		AttestationData: secret, CSR: serviceCSR(t, key, "sports", "web", joinProvider, "node-1")}
	r := e.call(t, e.client(nil), "POST", "/instance", reg)
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var id issuer.InstanceIdentity
	r.decode(t, &id)
	// Join token registrations refresh.
	r = e.call(t, e.client(tlsCert(t, id.X509Certificate, key)), "POST", "/instance/"+joinProvider+"/sports/web/node-1",
		issuer.InstanceRefreshInformation{CSR: serviceCSR(t, key, "sports", "web", joinProvider, "node-1")})
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if r = e.call(t, e.client(nil), "POST", "/instance", reg); r.status != 403 {
		t.Fatalf("burned token reused: %d %s", r.status, r.body)
	}
	_ = athenz.Principal
}
