package ntoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/ntoken"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeKeys is the registered public keys of the domain data, by domain/service/key id.
type fakeKeys map[string]crypto.PublicKey

func (f fakeKeys) ServicePublicKey(domain, service, keyID string) (crypto.PublicKey, bool) {
	k, ok := f[domain+"/"+service+"/"+keyID]
	return k, ok
}

type testKeySet struct {
	api, apiRSA, web, stranger crypto.Signer
	registered                 fakeKeys
}

var keys = sync.OnceValue(func() testKeySet {
	gen := func() crypto.Signer {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	k := testKeySet{api: gen(), apiRSA: rk, web: gen(), stranger: gen()}
	k.registered = fakeKeys{
		"sports/api/v1":  k.api.Public(),
		"sports/api/rsa": k.apiRSA.Public(),
		"sports/web/0":   k.web.Public(),
	}
	return k
})

func token(t testing.TB, signer crypto.Signer, edit func(n *athenz.NToken)) string {
	t.Helper()
	n := &athenz.NToken{Domain: "sports", Name: "api", KeyID: "v1", Hostname: "host1.example.com",
		IssueTime: now.Add(-time.Minute), ExpiryTime: now.Add(9 * time.Minute)}
	if edit != nil {
		edit(n)
	}
	s, err := n.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB) *ntoken.Verifier {
	t.Helper()
	v, err := ntoken.NewVerifier(ntoken.Config{Keys: keys().registered, MaxValidity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := keys()
	tests := []struct {
		name   string
		data   string
		edit   func(r *attestor.Request)
		reason attestor.Reason
		keyID  string
	}{
		{name: "valid ECDSA", data: token(t, k.api, nil), keyID: "v1"},
		{name: "valid RSA", data: token(t, k.apiRSA, func(n *athenz.NToken) { n.KeyID = "rsa" }),
			edit: func(r *attestor.Request) { r.PublicKey = k.apiRSA.Public() }, keyID: "rsa"},
		{name: "Java field order", keyID: "v1", data: func() string {
			// v,d,n,h,a,t,e,k then the signature, as the Java builder writes it.
			unsigned := "v=S1;d=sports;n=api;h=host1.example.com;a=0123456789abcdef;t=" + itoa(now.Add(-time.Minute)) + ";e=" + itoa(now.Add(time.Hour)) + ";k=v1"
			sig, err := athenz.SignYBase64(k.api, []byte(unsigned))
			if err != nil {
				t.Fatal(err)
			}
			return unsigned + ";s=" + sig
		}()},
		{name: "request naming no service gets the token's", data: token(t, k.api, nil), keyID: "v1",
			edit: func(r *attestor.Request) { r.Domain, r.Service = "", "" }},
		{name: "request in upper case", data: token(t, k.api, nil), keyID: "v1",
			edit: func(r *attestor.Request) { r.Domain, r.Service = "Sports", "API" }},
		{name: "expired", reason: attestor.ReasonExpired, data: token(t, k.api, func(n *athenz.NToken) {
			n.IssueTime, n.ExpiryTime = now.Add(-2*time.Hour), now.Add(-time.Hour)
		})},
		{name: "issued in the future", reason: attestor.ReasonNotYetValid, data: token(t, k.api, func(n *athenz.NToken) {
			n.IssueTime, n.ExpiryTime = now.Add(10*time.Minute), now.Add(20*time.Minute)
		})},
		{name: "lifetime over 30 days", reason: attestor.ReasonMalformed, data: token(t, k.api, func(n *athenz.NToken) {
			n.ExpiryTime = now.Add(31 * 24 * time.Hour)
		})},
		{name: "bad signature", reason: attestor.ReasonBadSignature, data: token(t, k.stranger, nil)},
		{name: "tampered field", reason: attestor.ReasonBadSignature,
			data: strings.Replace(token(t, k.api, nil), "h=host1.example.com", "h=host2.example.com", 1)},
		{name: "unknown key id", reason: attestor.ReasonUnknownKey, data: token(t, k.api, func(n *athenz.NToken) { n.KeyID = "v2" })},
		{name: "unknown service", reason: attestor.ReasonUnknownKey, data: token(t, k.api, func(n *athenz.NToken) { n.Name = "db" }),
			edit: func(r *attestor.Request) { r.Service = "db" }},
		{name: "CSR key differs from the registered key", reason: attestor.ReasonKeyMismatch, data: token(t, k.api, nil),
			edit: func(r *attestor.Request) { r.PublicKey = k.stranger.Public() }},
		{name: "CSR key of another type", reason: attestor.ReasonKeyMismatch, data: token(t, k.api, nil),
			edit: func(r *attestor.Request) { r.PublicKey = k.apiRSA.Public() }},
		{name: "no CSR key", reason: attestor.ReasonMalformed, data: token(t, k.api, nil),
			edit: func(r *attestor.Request) { r.PublicKey = nil }},
		{name: "token for another service", reason: attestor.ReasonIdentityMismatch,
			data: token(t, k.web, func(n *athenz.NToken) { n.Name, n.KeyID = "web", "0" })},
		{name: "token for another domain", reason: attestor.ReasonIdentityMismatch,
			data: token(t, k.api, func(n *athenz.NToken) { n.Domain = "weather" })},
		{name: "user token", reason: attestor.ReasonMalformed,
			data: token(t, k.api, func(n *athenz.NToken) { n.Version = "U1" })},
		{name: "token signed by the ZTS key", reason: attestor.ReasonMalformed,
			data: token(t, k.api, func(n *athenz.NToken) { n.KeyService = "zts" })},
		{name: "authorized-service tail", reason: attestor.ReasonMalformed, data: token(t, k.api, nil) + ";bk=0;bs=abc"},
		{name: "register token", reason: attestor.ReasonMalformed, data: "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"},
		{name: "empty", reason: attestor.ReasonMalformed, data: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &attestor.Request{Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1",
				AttestationData: tc.data, PublicKey: k.api.Public(), Now: now}
			if tc.edit != nil {
				tc.edit(r)
			}
			res, err := newVerifier(t).Verify(context.Background(), r)
			if tc.reason != "" {
				var e *attestor.Error
				if res != nil || !errors.As(err, &e) || e.Reason != tc.reason || e.Message == "" {
					t.Fatalf("got %+v, %v; want reason %s", res, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Domain != "sports" || res.Service != "api" || res.InstanceID != "i-1" || res.Refreshable ||
				res.MaxValidity != 24*time.Hour || res.Attributes["key_id"] != tc.keyID || res.Attributes["hostname"] != "host1.example.com" {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func itoa(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestConfig(t *testing.T) {
	if _, err := ntoken.NewVerifier(ntoken.Config{}); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := ntoken.NewVerifier(ntoken.Config{Keys: keys().registered, Skew: -1}); err == nil {
		t.Error("negative skew accepted")
	}
	// A lower MaxLifetime refuses zts-svccert-style tokens that live longer.
	v, err := ntoken.NewVerifier(ntoken.Config{Keys: keys().registered, MaxLifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r := &attestor.Request{Domain: "sports", Service: "api", AttestationData: token(t, keys().api, nil), PublicKey: keys().api.Public(), Now: now}
	if _, err := v.Verify(context.Background(), r); attestor.ReasonOf(err) != attestor.ReasonMalformed {
		t.Fatalf("10-minute token with a 5-minute limit: %v", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &attestor.Request{Domain: "sports", Service: "api", AttestationData: token(t, keys().api, nil), PublicKey: keys().api.Public(), Now: now}
	if _, err := newVerifier(t).Verify(ctx, r); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("got %v", err)
	}
}

func TestRecognizes(t *testing.T) {
	v := newVerifier(t)
	if !v.Recognizes(token(t, keys().api, nil)) {
		t.Error("n-token not recognized")
	}
	for _, s := range []string{"", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "amjt1.x", "v=S1;d=a;n=b"} {
		if v.Recognizes(s) {
			t.Errorf("recognized %q", s)
		}
	}
}
