package issuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// TestRegisterRefusals drives POST /instance with bad input: each is refused with an
// Athenz error body and the right status, and nothing is issued or recorded.
func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t)
	api := serviceKey("sports.api")
	now := time.Now()
	good := func() issuer.InstanceRegisterInformation {
		return issuer.InstanceRegisterInformation{Provider: "sys.auth.zts", Domain: "sports", Service: "api",
			AttestationData: ntoken(t, "sports.api", api, "0", now, 10*time.Minute),
			CSR:             serviceCSR(t, api, "sports", "api", "sys.auth.zts", "i-1")}
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(c ztstoken.Claims, key cryptoSigner) string {
		tok, err := ztstoken.Mint(&c, key, "0")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	regToken := ztstoken.Claims{IssuedAt: now.Unix(), Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1"}
	cases := []struct {
		name   string
		body   any
		mutate func(*issuer.InstanceRegisterInformation)
		status int
		msg    string
	}{
		{name: "CSR CN names another service", status: 400, msg: "subject CN", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = makeCSR(t, csrSpec{key: api, cn: "sports.ops", uris: []string{"athenz://instanceid/sys.auth.zts/i-1"}})
		}},
		{name: "CSR DNS SAN of another domain", status: 400, msg: "DNS SAN", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = makeCSR(t, csrSpec{key: api, cn: "sports.api", dns: []string{"api.weather.athenz.cloud"}, uris: []string{"athenz://instanceid/sys.auth.zts/i-1"}})
		}},
		{name: "CSR SPIFFE ID of another service", status: 400, msg: "URI SAN", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = makeCSR(t, csrSpec{key: api, cn: "sports.api", uris: []string{"spiffe://sports/sa/ops", "athenz://instanceid/sys.auth.zts/i-1"}})
		}},
		{name: "CSR asks for CA:true", status: 400, msg: "CA", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = makeCSR(t, csrSpec{key: api, cn: "sports.api", uris: []string{"athenz://instanceid/sys.auth.zts/i-1"}, isCA: true})
		}},
		{name: "RSA key under 2048 bits", status: 400, msg: "RSA", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = serviceCSR(t, rsa1024, "sports", "api", "sys.auth.zts", "i-1")
		}},
		{name: "unsupported curve", status: 400, msg: "P-521", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = serviceCSR(t, p521, "sports", "api", "sys.auth.zts", "i-1")
		}},
		{name: "garbage CSR", status: 400, msg: "PEM", mutate: func(r *issuer.InstanceRegisterInformation) { r.CSR = "not a csr" }},
		{name: "no instance id", status: 400, msg: "instance id", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = serviceCSR(t, api, "sports", "api", "", "")
		}},
		{name: "instance id of another provider", status: 400, msg: "provider", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = serviceCSR(t, api, "sports", "api", joinProvider, "i-1")
		}},
		{name: "garbage body", body: "{not json", status: 400},
		{name: "trailing data", body: `{"provider":"sys.auth.zts"} {}`, status: 400},
		{name: "oversized body", body: `{"csr":"` + strings.Repeat("A", 70<<10) + `"}`, status: 413},
		{name: "invalid domain name", status: 400, mutate: func(r *issuer.InstanceRegisterInformation) { r.Domain = "sports..x" }},
		{name: "no attestation data", status: 400, mutate: func(r *issuer.InstanceRegisterInformation) { r.AttestationData = "" }},
		{name: "n-token expired", status: 403, msg: "expired", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.AttestationData = ntoken(t, "sports.api", api, "0", now.Add(-2*time.Hour), time.Hour)
		}},
		{name: "n-token bad signature", status: 403, msg: "bad_signature", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.AttestationData = ntoken(t, "sports.api", serviceKey("other.key"), "0", now, 10*time.Minute)
		}},
		{name: "n-token unknown key", status: 403, msg: "unknown_key", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.AttestationData = ntoken(t, "sports.api", api, "9", now, 10*time.Minute)
		}},
		{name: "n-token of another service", status: 403, mutate: func(r *issuer.InstanceRegisterInformation) {
			r.AttestationData = ntoken(t, "sports.ops", serviceKey("sports.ops"), "0", now, 10*time.Minute)
		}},
		{name: "CSR key is not the registered key", status: 403, msg: "key_mismatch", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.CSR = serviceCSR(t, serviceKey("other.key"), "sports", "api", "sys.auth.zts", "i-1")
		}},
		{name: "foreign register token", status: 403, msg: "bad_signature", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.AttestationData = mint(regToken, serviceKey("other.key"))
		}},
		{name: "expired register token", status: 403, msg: "expired", mutate: func(r *issuer.InstanceRegisterInformation) {
			c := regToken
			c.IssuedAt = now.Add(-time.Hour).Unix()
			r.AttestationData = mint(c, e.ztsSigner(t))
		}},
		{name: "register token for another instance", status: 403, msg: "identity_mismatch", mutate: func(r *issuer.InstanceRegisterInformation) {
			c := regToken
			c.InstanceID = "i-2"
			r.AttestationData = mint(c, e.ztsSigner(t))
		}},
		{name: "register token for another service", status: 403, mutate: func(r *issuer.InstanceRegisterInformation) {
			c := regToken
			c.Service = "web"
			r.AttestationData = mint(c, e.ztsSigner(t))
		}},
		{name: "provider not allowed to launch the service", status: 403, msg: "not authorized to launch", mutate: func(r *issuer.InstanceRegisterInformation) {
			k := serviceKey("weather.temp")
			r.Domain, r.Service = "weather", "temp"
			r.AttestationData = ntoken(t, "weather.temp", k, "0", now, 10*time.Minute)
			r.CSR = serviceCSR(t, k, "weather", "temp", "sys.auth.zts", "i-1")
		}},
		{name: "unknown domain", status: 404, mutate: func(r *issuer.InstanceRegisterInformation) {
			r.Domain = "nosuch"
			r.CSR = serviceCSR(t, api, "nosuch", "api", "sys.auth.zts", "i-1")
		}},
		{name: "unknown provider", status: 403, msg: "not configured", mutate: func(r *issuer.InstanceRegisterInformation) {
			r.Provider = "nosuch.provider"
			r.CSR = serviceCSR(t, api, "sports", "api", "nosuch.provider", "i-1")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.store.puts.Load()
			body := tc.body
			if body == nil {
				req := good()
				tc.mutate(&req)
				body = req
			}
			r := e.call(t, e.client(nil), "POST", "/instance", body)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			eb := r.errorBody(t)
			if !strings.Contains(eb.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", eb.Message, tc.msg)
			}
			if e.store.puts.Load() != before {
				t.Fatal("a certificate was recorded")
			}
			_, err := e.store.CurrentCertificate(context.Background(), "sys.auth.zts", "sports", "api", "i-1")
			expectNotFound(t, err)
		})
	}
	// The good request still works afterwards: nothing above spent it.
	if r := e.call(t, e.client(nil), "POST", "/instance", good()); r.status != 201 {
		t.Fatalf("good request: %d %s", r.status, r.body)
	}
}
