package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// serverKey fetches sys.auth.<svc>'s published key id "0".
func (e *env) serverKey(t testing.TB, svc string) crypto.PublicKey {
	t.Helper()
	r := e.call(t, e.client(nil), "GET", "/domain/sys.auth/service/"+svc+"/publickey/0", nil)
	if r.status != 200 {
		t.Fatalf("%s key: %d %s", svc, r.status, r.body)
	}
	var pk issuer.PublicKeyEntry
	r.decode(t, &pk)
	pub, err := athenz.DecodePublicKeyEntry(pk.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestSignedPolicyData(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	r := e.call(t, c, "GET", "/domain/sports/signed_policy_data", nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if etag := r.header.Get("ETag"); etag != `"2026-01-02T03:04:05.600Z"` {
		t.Errorf("ETag %q", etag)
	}
	if bytes.Contains(r.body, []byte(`"id"`)) || bytes.Contains(r.body, []byte("caseSensitive")) {
		t.Errorf("legacy signed policy data carries ids: %s", r.body)
	}
	var doc athenz.DomainSignedPolicyData
	r.decode(t, &doc)
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := doc.Verify(e.serverKey(t, "zts")); err != nil {
		t.Fatalf("ZTS signature: %v", err)
	}
	if err := doc.SignedPolicyData.VerifyZMS(e.serverKey(t, "zms")); err != nil {
		t.Fatalf("ZMS signature: %v", err)
	}
	if left := time.Until(doc.SignedPolicyData.Expires.Time); left < 6*24*time.Hour || left > 7*24*time.Hour {
		t.Errorf("expires in %s, want 7 days", left)
	}
	pols := doc.SignedPolicyData.PolicyData.Policies
	if len(pols) != 3 || doc.KeyID != "0" || doc.SignedPolicyData.ZMSKeyID != "0" {
		t.Fatalf("policies %+v", doc)
	}
	var effects []string
	for _, p := range pols {
		for _, a := range p.Assertions {
			effects = append(effects, a.Effect)
		}
	}
	if strings.Join(effects, ",") != "ALLOW,ALLOW,ALLOW,DENY" {
		t.Errorf("effects %v", effects)
	}
	for _, tc := range []struct {
		inm  string
		want int
	}{{`"2026-01-02T03:04:05.600Z"`, 304}, {"", 200}, {`""`, 200}, {`"2020-01-01T00:00:00.000Z"`, 200}} {
		r := e.call(t, c, "GET", "/domain/sports/signed_policy_data", nil, "If-None-Match", tc.inm)
		if r.status != tc.want {
			t.Errorf("If-None-Match %q: %d, want %d", tc.inm, r.status, tc.want)
		}
	}
	if r := e.call(t, c, "GET", "/domain/nosuch/signed_policy_data", nil); r.status != 404 {
		t.Errorf("unknown domain: %d", r.status)
	}
}

func TestJWSPolicyData(t *testing.T) {
	e := newEnv(t)
	zts := e.serverKey(t, "zts")
	for _, p1363 := range []bool{true, false} {
		r := e.call(t, e.client(nil), "POST", "/domain/sports/policy/signed", issuer.SignedPolicyRequest{SignatureP1363Format: p1363})
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var jp issuer.JWSPolicyData
		r.decode(t, &jp)
		if jp.Header["kid"] != "0" {
			t.Errorf("header %v", jp.Header)
		}
		if !p1363 {
			// DER ECDSA is the legacy Java form; go-jose only reads P1363.
			sig, err := base64.RawURLEncoding.DecodeString(jp.Signature)
			digest := sha256.Sum256([]byte(jp.Protected + "." + jp.Payload))
			if err != nil || !ecdsa.VerifyASN1(zts.(*ecdsa.PublicKey), digest[:], sig) {
				t.Fatalf("DER JWS signature does not verify: %v", err)
			}
			continue
		}
		sig, err := jose.ParseSigned(string(r.body), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		payload, err := sig.Verify(zts)
		if err != nil {
			t.Fatalf("JWS: %v", err)
		}
		var spd athenz.SignedPolicyData
		if err := json.Unmarshal(payload, &spd); err != nil || spd.PolicyData.Domain != "sports" || len(spd.PolicyData.Policies) != 3 {
			t.Fatalf("payload %s: %v", payload, err)
		}
	}
	r := e.call(t, e.client(nil), "POST", "/domain/sports/policy/signed", `{"policyVersions":{"read":"v9"},"signatureP1363Format":true}`)
	if r.status != 404 {
		t.Errorf("unknown version: %d %s", r.status, r.body)
	}
	r = e.call(t, e.client(nil), "POST", "/domain/sports/policy/signed", issuer.SignedPolicyRequest{}, "If-None-Match", `"2026-01-02T03:04:05.600Z"`)
	if r.status != 304 {
		t.Errorf("If-None-Match: %d", r.status)
	}
}

func TestKeysAndConfig(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	var si issuer.ServiceIdentity
	r := e.call(t, c, "GET", "/domain/sys.auth/service/zts", nil)
	r.decode(t, &si)
	if si.Name != "sys.auth.zts" || len(si.PublicKeys) != 1 || si.PublicKeys[0].ID != "0" || si.Modified == nil {
		t.Fatalf("sys.auth.zts %+v", si)
	}
	if r2 := e.call(t, c, "GET", "/domain/sys.auth/service/zts", nil, "If-None-Match", r.header.Get("ETag")); r2.status != 304 {
		t.Errorf("service If-None-Match: %d", r2.status)
	}
	r = e.call(t, c, "GET", "/domain/sports/service/api", nil)
	r.decode(t, &si)
	if si.Name != "sports.api" || len(si.PublicKeys) != 1 || si.PublicKeys[0].Key != entry(t, serviceKey("sports.api")) {
		t.Fatalf("sports.api %+v", si)
	}
	// One ZTS key id everywhere: JWKS kid, sys.auth.zts key id, token k=, policy keyId.
	set := e.jwks(t)
	jwk, ok := set.Key("0")
	if !ok || !jwk.(interface{ Equal(crypto.PublicKey) bool }).Equal(e.serverKey(t, "zts")) {
		t.Fatal("JWKS key 0 is not sys.auth.zts key 0")
	}
	r = e.call(t, c, "GET", "/oauth2/keys", nil)
	if !bytes.Contains(r.body, []byte(`"crv":"prime256v1"`)) {
		t.Errorf("JWKS without rfc: %s", r.body)
	}
	r = e.call(t, c, "GET", "/oauth2/keys?rfc=true&service=zms", nil)
	zms, err := athenz.ParseJWKS(r.body)
	if err != nil || !zms["0"].(interface{ Equal(crypto.PublicKey) bool }).Equal(e.serverKey(t, "zms")) {
		t.Fatalf("ZMS JWKS %s: %v", r.body, err)
	}
	var cab issuer.CertificateAuthorityBundle
	r = e.call(t, c, "GET", "/cacerts/athenz", nil)
	r.decode(t, &cab)
	if cab.Name != "athenz" || !strings.Contains(cab.Certs, "BEGIN CERTIFICATE") {
		t.Errorf("cacerts %+v", cab)
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := e.call(t, c, "GET", p, nil)
		if r.status != 200 || !bytes.Contains(r.body, []byte(`"jwks_uri":"`+e.srv.Issuer()+`/oauth2/keys?rfc=true"`)) {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	for path, want := range map[string]int{
		"/domain/sports/service/nosuch":          404,
		"/domain/nosuch/service/api":             404,
		"/domain/sports/service/api/publickey/7": 404,
		"/domain/sports/service/api/publickey/0": 200,
		"/cacerts/system":                        404,
		"/oauth2/keys?service=other":             400,
		"/no/such/route":                         404,
		"/domain/sports/service/Bad..Name":       400,
	} {
		r := e.call(t, c, "GET", path, nil)
		if r.status != want {
			t.Errorf("%s: %d %s, want %d", path, r.status, r.body, want)
		}
		if want != 200 {
			r.errorBody(t)
		}
	}
}

func TestBundle(t *testing.T) {
	e := newEnv(t)
	pubPEM, err := os.ReadFile(filepath.Join(e.dataDir, "bundle.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := policy.ParseVerificationKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := issuer.NewClient(issuer.ClientConfig{BaseURL: e.base, HTTPClient: e.client(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data, etag, err := cl.FetchBundle(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.ReadBundle(bytes.NewReader(data), policy.ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": pub}})
	if err != nil {
		t.Fatal(err)
	}
	if etag != `"`+b.Revision+`"` || b.KeyID != "default" || b.Compiled.Domains["sports"] == nil {
		t.Fatalf("bundle revision %q etag %q key %q", b.Revision, etag, b.KeyID)
	}
	if data, _, err := cl.FetchBundle(ctx, etag, 0); err != nil || data != nil {
		t.Fatalf("unchanged bundle: %d bytes, %v", len(data), err)
	}
	// A long poll returns as soon as the domains change.
	type result struct {
		data []byte
		etag string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		d, et, err := cl.FetchBundle(ctx, etag, 8*time.Second)
		done <- result{d, et, err}
	}()
	time.Sleep(100 * time.Millisecond) // let the poll start waiting; the answer does not depend on it
	doms := testDomains(t)
	doms[2].Roles = append(doms[2].Roles, roleOf("weather", "writers", "sports.ops"))
	writeDomain(t, e.domainsDir, doms[2])
	select {
	case res := <-done:
		if res.err != nil || res.data == nil || res.etag == etag {
			t.Fatalf("long poll: %d bytes, etag %q, %v", len(res.data), res.etag, res.err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("long poll did not return on change")
	}
	// The access token route sees the new membership too.
	ops := e.client(e.serviceCert(t, "sports.ops"))
	if r := e.call(t, ops, "GET", "/domain/weather/token", nil); r.status != 200 {
		t.Fatalf("role token after reload: %d %s", r.status, r.body)
	}
	// A long poll with nothing changing ends with 304.
	_, etag2, _ := cl.FetchBundle(ctx, "", 0)
	start := time.Now()
	if data, _, err := cl.FetchBundle(ctx, etag2, time.Second); err != nil || data != nil || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("idle long poll: %d bytes after %s, %v", len(data), time.Since(start), err)
	}
}
