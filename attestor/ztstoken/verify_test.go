package ztstoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeOnce is an in-memory OnceStore with the store's contract: the first use of a
// (kind, id) wins, later ones wrap attestor.ErrAlreadyUsed.
type fakeOnce struct {
	mu   sync.Mutex
	used map[string]time.Time
	fail error
}

func newFakeOnce() *fakeOnce { return &fakeOnce{used: map[string]time.Time{}} }

func (f *fakeOnce) UseOnce(_ context.Context, kind, id string, expires time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	k := kind + "/" + id
	if _, ok := f.used[k]; ok {
		return fmt.Errorf("use %s %q: %w", kind, id, attestor.ErrAlreadyUsed)
	}
	f.used[k] = expires
	return nil
}

type keys struct {
	ec, rsa, other crypto.Signer
	set            athenz.StaticKeySet
}

var testKeys = sync.OnceValue(func() keys {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return keys{ec: ec, rsa: rk, other: other, set: athenz.StaticKeySet{"zts-ec": ec.Public(), "zts-rsa": rk.Public()}}
})

func baseClaims() *ztstoken.Claims {
	return &ztstoken.Claims{
		ID: "0b5e3c1e-5a0e-4c43-9a53-6b1a0e2f6f10", IssuedAt: now.Add(-time.Minute).Unix(),
		Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "host-1",
		ClientID: "sports.deployer",
	}
}

func mint(t testing.TB, c *ztstoken.Claims, signer crypto.Signer, kid string) string {
	t.Helper()
	tok, err := ztstoken.Mint(c, signer, kid)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func baseRequest(token string) *attestor.Request {
	return &attestor.Request{
		Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "host-1",
		AttestationData: token, Now: now, ClientIP: "10.0.0.1",
	}
}

func newVerifier(t testing.TB, once ztstoken.OnceStore) *ztstoken.Verifier {
	t.Helper()
	v, err := ztstoken.NewVerifier(ztstoken.Config{Keys: testKeys().set, Once: once, MaxValidity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var b64 = base64.RawURLEncoding

// rawToken builds a JWS from arbitrary header and claims JSON, signed (ES256, raw R||S)
// by signer, or with the given signature bytes when signer is nil.
func rawToken(t testing.TB, header, claims string, signer crypto.Signer, sig []byte) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	if signer != nil {
		d := sha256.Sum256([]byte(input))
		der, err := signer.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		sig = derToRaw(t, der)
	}
	return input + "." + b64.EncodeToString(sig)
}

func claimsJSON(t testing.TB, edit func(m map[string]any)) string {
	t.Helper()
	c := baseClaims()
	m := map[string]any{
		"jti": c.ID, "sub": "sports.api", "iat": c.IssuedAt, "iss": "sys.auth.zts", "aud": "sys.auth.zts",
		"provider": c.Provider, "domain": c.Domain, "service": c.Service, "instance_id": c.InstanceID, "client_id": c.ClientID,
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerify(t *testing.T) {
	k := testKeys()
	ecHeader := `{"alg":"ES256","kid":"zts-ec","typ":"JWT"}`
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		edit   func(r *attestor.Request)
		reason attestor.Reason // "" means accepted
	}{
		{name: "valid ES256", token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") }},
		{name: "valid RS256", token: func(t *testing.T) string { return mint(t, baseClaims(), k.rsa, "zts-rsa") }},
		{name: "request names in upper case", token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Domain, r.Service, r.Provider = "SPORTS", "API", "SYS.AUTH.ZTS" }},
		{name: "request naming no service gets the token's", token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Domain, r.Service = "", "" }},
		{name: "iat 29 minutes old", token: func(t *testing.T) string {
			c := baseClaims()
			c.IssuedAt = now.Add(-29 * time.Minute).Unix()
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "iat 31 minutes old", reason: attestor.ReasonExpired, token: func(t *testing.T) string {
			c := baseClaims()
			c.IssuedAt = now.Add(-31 * time.Minute).Unix()
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "iat in the future beyond skew", reason: attestor.ReasonNotYetValid, token: func(t *testing.T) string {
			c := baseClaims()
			c.IssuedAt = now.Add(2 * time.Minute).Unix()
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "iat in the future within skew", token: func(t *testing.T) string {
			c := baseClaims()
			c.IssuedAt = now.Add(20 * time.Second).Unix()
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "wrong domain", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Domain = "weather" }},
		{name: "wrong service", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Service = "web" }},
		{name: "wrong instance id", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.InstanceID = "host-2" }},
		{name: "instance id differs in case", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.InstanceID = "HOST-1" }},
		{name: "no instance id in the request", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.InstanceID = "" }},
		{name: "wrong provider", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Provider = "athenz.aws.us-west-2" }},
		{name: "unicode look-alike domain", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return mint(t, baseClaims(), k.ec, "zts-ec") },
			edit: func(r *attestor.Request) { r.Domain = "\u017fports" }},
		{name: "signed by another key under a trusted kid", reason: attestor.ReasonBadSignature,
			token: func(t *testing.T) string { return mint(t, baseClaims(), k.other, "zts-ec") }},
		{name: "unknown kid", reason: attestor.ReasonUnknownKey,
			token: func(t *testing.T) string { return mint(t, baseClaims(), k.other, "someone-else") }},
		{name: "no kid", reason: attestor.ReasonUnknownKey,
			token: func(t *testing.T) string {
				return rawToken(t, `{"alg":"ES256","typ":"JWT"}`, claimsJSON(t, nil), k.ec, nil)
			}},
		{name: "ES256 header on an RSA key", reason: attestor.ReasonUnsupportedAlgorithm,
			token: func(t *testing.T) string {
				return rawToken(t, `{"alg":"ES256","kid":"zts-rsa","typ":"JWT"}`, claimsJSON(t, nil), k.ec, nil)
			}},
		{name: "alg none, empty signature", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return b64.EncodeToString([]byte(`{"alg":"none","kid":"zts-ec","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(claimsJSON(t, nil))) + "."
		}},
		{name: "alg none with a dummy signature", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string {
			return rawToken(t, `{"alg":"none","kid":"zts-ec","typ":"JWT"}`, claimsJSON(t, nil), nil, []byte("x"))
		}},
		{name: "HS256 keyed with the public key", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string {
			input := b64.EncodeToString([]byte(`{"alg":"HS256","kid":"zts-ec","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(claimsJSON(t, nil)))
			pub, _ := k.ec.Public().(*ecdsa.PublicKey).Bytes()
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(input))
			return input + "." + b64.EncodeToString(m.Sum(nil))
		}},
		{name: "access token type", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, `{"alg":"ES256","kid":"zts-ec","typ":"at+jwt"}`, claimsJSON(t, nil), k.ec, nil)
		}},
		{name: "typ in lower case", token: func(t *testing.T) string {
			return rawToken(t, `{"alg":"ES256","kid":"zts-ec","typ":"jwt"}`, claimsJSON(t, nil), k.ec, nil)
		}},
		{name: "crit header", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, `{"alg":"ES256","kid":"zts-ec","typ":"JWT","crit":["exp"]}`, claimsJSON(t, nil), k.ec, nil)
		}},
		{name: "wrong issuer", reason: attestor.ReasonWrongIssuer, token: func(t *testing.T) string {
			c := baseClaims()
			c.Issuer = "https://zts.example.com/zts/v1"
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "wrong audience", reason: attestor.ReasonWrongAudience, token: func(t *testing.T) string {
			c := baseClaims()
			c.Audience = "sports"
			return mint(t, c, k.ec, "zts-ec")
		}},
		{name: "audience as an array", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { m["aud"] = []string{"sys.auth.zts"} }), k.ec, nil)
		}},
		{name: "sub for another service", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { m["sub"] = "sports.web" }), k.ec, nil)
		}},
		{name: "missing instance_id", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { delete(m, "instance_id") }), k.ec, nil)
		}},
		{name: "missing jti", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { delete(m, "jti") }), k.ec, nil)
		}},
		{name: "fractional iat", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { m["iat"] = float64(now.Unix()) + 0.5 }), k.ec, nil)
		}},
		{name: "iat as a string", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { m["iat"] = fmt.Sprint(now.Unix()) }), k.ec, nil)
		}},
		{name: "duplicate domain claim", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			c := strings.Replace(claimsJSON(t, nil), `"domain":"sports"`, `"domain":"sports","domain":"weather"`, 1)
			return rawToken(t, ecHeader, c, k.ec, nil)
		}},
		{name: "claim name in other case", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			c := strings.Replace(claimsJSON(t, nil), `"instance_id"`, `"INSTANCE_ID"`, 1)
			return rawToken(t, ecHeader, c, k.ec, nil)
		}},
		{name: "instance id that cannot be a URI path", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return rawToken(t, ecHeader, claimsJSON(t, func(m map[string]any) { m["instance_id"] = "a/b" }), k.ec, nil)
		}},
		{name: "garbage", reason: attestor.ReasonMalformed, token: func(t *testing.T) string { return "not a token" }},
		{name: "empty", reason: attestor.ReasonMalformed, token: func(t *testing.T) string { return "" }},
		{name: "n-token", reason: attestor.ReasonMalformed, token: func(t *testing.T) string { return "v=S1;d=sports;n=api;a=1;t=1;e=2;s=x" }},
		{name: "oversized", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return "eyJ" + strings.Repeat("A", ztstoken.MaxTokenLength) + ".a.b"
		}},
		{name: "truncated signature", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			tok := mint(t, baseClaims(), k.ec, "zts-ec")
			return tok[:len(tok)-1]
		}},
		{name: "tampered signature", reason: attestor.ReasonBadSignature, token: func(t *testing.T) string {
			parts := strings.Split(mint(t, baseClaims(), k.ec, "zts-ec"), ".")
			sig, err := b64.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			sig[10] ^= 0x01
			parts[2] = b64.EncodeToString(sig)
			return strings.Join(parts, ".")
		}},
		{name: "claims changed after signing", reason: attestor.ReasonBadSignature, token: func(t *testing.T) string {
			parts := strings.Split(mint(t, baseClaims(), k.ec, "zts-ec"), ".")
			parts[1] = b64.EncodeToString([]byte(claimsJSON(t, func(m map[string]any) { m["service"], m["sub"] = "web", "sports.web" })))
			return strings.Join(parts, ".")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			once := newFakeOnce()
			v := newVerifier(t, once)
			r := baseRequest(tc.token(t))
			if tc.edit != nil {
				tc.edit(r)
			}
			res, err := v.Verify(context.Background(), r)
			if tc.reason != "" {
				if res != nil || attestor.ReasonOf(err) != tc.reason {
					t.Fatalf("got %+v, %v; want reason %s", res, err, tc.reason)
				}
				var e *attestor.Error
				if !errors.As(err, &e) || e.Message == "" {
					t.Fatalf("error %v is not an *attestor.Error with a message", err)
				}
				if len(once.used) != 0 {
					t.Fatal("a refused token was marked used")
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Domain != "sports" || res.Service != "api" || res.InstanceID != "host-1" || !res.Refreshable ||
				res.MaxValidity != time.Hour || res.Attributes["token_id"] != baseClaims().ID || res.Attributes["client_id"] != "sports.deployer" {
				t.Fatalf("result %+v", res)
			}
			if len(once.used) != 1 {
				t.Fatalf("used marks %v, want one", once.used)
			}
			for k, exp := range once.used {
				if !strings.HasPrefix(k, ztstoken.UseKind+"/") || !exp.After(now) {
					t.Fatalf("mark %s expiring %s", k, exp)
				}
			}
		})
	}
}

func TestReplay(t *testing.T) {
	once := newFakeOnce()
	v := newVerifier(t, once)
	tok := mint(t, baseClaims(), testKeys().ec, "zts-ec")
	if _, err := v.Verify(context.Background(), baseRequest(tok)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), baseRequest(tok))
	if attestor.ReasonOf(err) != attestor.ReasonReplayed || !errors.Is(err, attestor.ErrAlreadyUsed) {
		t.Fatalf("replay: %v", err)
	}
}

// TestConcurrentReplay presents one token from many goroutines: exactly one wins.
func TestConcurrentReplay(t *testing.T) {
	v := newVerifier(t, newFakeOnce())
	tok := mint(t, baseClaims(), testKeys().ec, "zts-ec")
	var ok, replayed atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), baseRequest(tok))
			switch attestor.ReasonOf(err) {
			case "":
				ok.Add(1)
			case attestor.ReasonReplayed:
				replayed.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 15 {
		t.Fatalf("%d accepted, %d replays", ok.Load(), replayed.Load())
	}
}

// TestMismatchDoesNotBurn: a token presented for the wrong instance stays usable.
func TestMismatchDoesNotBurn(t *testing.T) {
	v := newVerifier(t, newFakeOnce())
	tok := mint(t, baseClaims(), testKeys().ec, "zts-ec")
	r := baseRequest(tok)
	r.InstanceID = "typo"
	if _, err := v.Verify(context.Background(), r); attestor.ReasonOf(err) != attestor.ReasonIdentityMismatch {
		t.Fatalf("mismatch: %v", err)
	}
	if _, err := v.Verify(context.Background(), baseRequest(tok)); err != nil {
		t.Fatalf("after a mismatch: %v", err)
	}
}

func TestStoreFailureFailsClosed(t *testing.T) {
	once := newFakeOnce()
	once.fail = errors.New("database is locked")
	v := newVerifier(t, once)
	res, err := v.Verify(context.Background(), baseRequest(mint(t, baseClaims(), testKeys().ec, "zts-ec")))
	if res != nil || attestor.ReasonOf(err) != attestor.ReasonUnavailable || strings.Contains(attestor.MessageOf(err), "locked") {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newVerifier(t, newFakeOnce()).Verify(ctx, baseRequest(mint(t, baseClaims(), testKeys().ec, "zts-ec")))
	if attestor.ReasonOf(err) != attestor.ReasonUnavailable || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestConfig(t *testing.T) {
	once := newFakeOnce()
	for name, cfg := range map[string]ztstoken.Config{
		"no keys":      {Once: once},
		"no store":     {Keys: testKeys().set},
		"negative age": {Keys: testKeys().set, Once: once, MaxAge: -time.Second},
	} {
		if _, err := ztstoken.NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A custom MaxAge and Issuer apply.
	v, err := ztstoken.NewVerifier(ztstoken.Config{Keys: testKeys().set, Once: once, MaxAge: 5 * time.Minute, Issuer: "zts.example"})
	if err != nil {
		t.Fatal(err)
	}
	c := baseClaims()
	c.Issuer, c.Audience = "zts.example", "zts.example"
	c.IssuedAt = now.Add(-6 * time.Minute).Unix()
	if _, err := v.Verify(context.Background(), baseRequest(mint(t, c, testKeys().ec, "zts-ec"))); attestor.ReasonOf(err) != attestor.ReasonExpired {
		t.Fatalf("max age 5m, token 6m old: %v", err)
	}
	c.IssuedAt = now.Add(-4 * time.Minute).Unix()
	if _, err := v.Verify(context.Background(), baseRequest(mint(t, c, testKeys().ec, "zts-ec"))); err != nil {
		t.Fatalf("custom issuer: %v", err)
	}
}

func TestMint(t *testing.T) {
	k := testKeys()
	c := baseClaims()
	c.ID = ""
	tok := mint(t, c, k.ec, "zts-ec")
	if c.ID != "" || c.Subject != "" {
		t.Fatal("Mint modified its argument")
	}
	hdr, payload, _ := strings.Cut(tok, ".")
	payload, _, _ = strings.Cut(payload, ".")
	var h, m map[string]any
	hb, _ := b64.DecodeString(hdr)
	pb, _ := b64.DecodeString(payload)
	if json.Unmarshal(hb, &h) != nil || json.Unmarshal(pb, &m) != nil {
		t.Fatal("token parts are not JSON")
	}
	if h["typ"] != "JWT" || h["kid"] != "zts-ec" || h["alg"] != "ES256" {
		t.Fatalf("header %v", h)
	}
	want := []string{"jti", "sub", "iat", "iss", "aud", "provider", "domain", "service", "instance_id", "client_id"}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %s missing from %v", k, m)
		}
	}
	if len(m) != len(want) || m["sub"] != "sports.api" || m["iss"] != "sys.auth.zts" || m["aud"] != "sys.auth.zts" || len(m["jti"].(string)) != 36 {
		t.Fatalf("claims %v", m)
	}
	// Two tokens for the same claims get different ids.
	if a, b := mint(t, c, k.ec, "zts-ec"), mint(t, c, k.ec, "zts-ec"); a == b {
		t.Fatal("two mints gave the same token")
	}
	bad := []func(c *ztstoken.Claims){
		func(c *ztstoken.Claims) { c.Domain = "" },
		func(c *ztstoken.Claims) { c.Service = "a.b" },
		func(c *ztstoken.Claims) { c.Provider = "" },
		func(c *ztstoken.Claims) { c.InstanceID = "" },
		func(c *ztstoken.Claims) { c.InstanceID = "a/b" },
		func(c *ztstoken.Claims) { c.IssuedAt = 0 },
		func(c *ztstoken.Claims) { c.Subject = "sports.web" },
		func(c *ztstoken.Claims) { c.ID = "has space" },
	}
	for i, edit := range bad {
		c := baseClaims()
		edit(c)
		if _, err := ztstoken.Mint(c, k.ec, "zts-ec"); err == nil {
			t.Errorf("bad claims %d minted", i)
		}
	}
	if _, err := ztstoken.Mint(baseClaims(), k.ec, ""); err == nil {
		t.Error("minted without a kid")
	}
	if _, err := ztstoken.Mint(nil, k.ec, "zts-ec"); err == nil {
		t.Error("minted nil claims")
	}
}

func TestRecognizes(t *testing.T) {
	v := newVerifier(t, newFakeOnce())
	if !v.Recognizes(mint(t, baseClaims(), testKeys().ec, "zts-ec")) {
		t.Error("own token not recognized")
	}
	for _, s := range []string{"", "v=S1;d=sports.prod;n=api;h=a.b.c;s=x", "amjt1.abc", "eyJ.a"} {
		if v.Recognizes(s) {
			t.Errorf("recognized %q", s)
		}
	}
}
