package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// credNow is the fixed time credential tests check tokens against.
var credNow = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

const credIssuer = "https://zts.example.com/zts/v1"

// credCert is a test certificate as Envoy reports a peer.
type credCert struct {
	cert *x509.Certificate
	enc  string // URL-encoded PEM, as attributes.source.certificate
	uri  string // first URI SAN, as attributes.source.principal
}

// credFixture holds the keys and certificates of the credential tests, generated once
// per test binary (RSA key generation is slow under -race).
type credFixture struct {
	ec, other, ztsEC *ecdsa.PrivateKey
	rsa              *rsa.PrivateKey // signs access tokens ("rsa-1") and role tokens ("zts.rsa")
	keys             athenz.StaticKeySet

	api, otherSvc, role, mixedRole, istio, istioCN, badIdentity, noURI credCert
}

var credFixtureOnce = sync.OnceValues(newCredFixture)

func credKeys(tb testing.TB) *credFixture {
	tb.Helper()
	f, err := credFixtureOnce()
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func newCredFixture() (*credFixture, error) {
	f := &credFixture{}
	var err error
	for _, k := range []**ecdsa.PrivateKey{&f.ec, &f.other, &f.ztsEC} {
		if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
	}
	if f.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	f.keys = athenz.StaticKeySet{"ec-1": f.ec.Public(), "rsa-1": f.rsa.Public()}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: credNow.Add(-time.Hour), NotAfter: credNow.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issue := func(cn string, emails []string, uris ...string) (credCert, error) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Athenz"}},
			NotBefore: credNow.Add(-time.Hour), NotAfter: credNow.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			EmailAddresses: emails,
		}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				return credCert{}, err
			}
			tmpl.URIs = append(tmpl.URIs, u)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, leafKey.Public(), caKey)
		if err != nil {
			return credCert{}, err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return credCert{}, err
		}
		c := credCert{cert: cert, enc: credURLEncode(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
		if len(uris) > 0 {
			c.uri = uris[0]
		}
		return c, nil
	}
	for _, c := range []struct {
		dst    *credCert
		cn     string
		emails []string
		uris   []string
	}{
		{&f.api, "sports.api", nil, []string{"spiffe://sports/sa/api"}},
		{&f.otherSvc, "sports.other", nil, []string{"spiffe://sports/sa/other"}},
		{&f.role, "sports:role.readers", []string{"sports.api@athenz.cloud"},
			[]string{"spiffe://sports/ra/readers", "athenz://principal/sports.api", "athenz://role/sports/writers"}},
		{&f.mixedRole, "sports:role.readers", []string{"sports.api@athenz.cloud"},
			[]string{"spiffe://sports/ra/readers", "athenz://role/media/viewers"}},
		{&f.istio, "", nil, []string{"spiffe://cluster.local/ns/prod/sa/frontend"}},
		{&f.istioCN, "frontend", nil, []string{"spiffe://cluster.local/ns/prod/sa/frontend"}},
		{&f.badIdentity, "sports.api", nil, []string{"spiffe://media/sa/api"}},
		{&f.noURI, "sports.api", nil, nil},
	} {
		if *c.dst, err = issue(c.cn, c.emails, c.uris...); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// credURLEncode encodes PEM as Envoy does for attributes.source.certificate.
func credURLEncode(pemBytes []byte) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(string(pemBytes))
}

// accessToken signs claims derived from a valid default (sub sports.batch, aud sports,
// roles readers and writers, issued a minute before credNow for an hour, bound to the
// api certificate), changed by edit.
func (f *credFixture) accessToken(tb testing.TB, key crypto.Signer, kid string, edit func(*athenz.AccessTokenClaims)) string {
	tb.Helper()
	c := &athenz.AccessTokenClaims{
		Issuer: credIssuer, Subject: "sports.batch", Audience: "sports",
		IssuedAt: credNow.Add(-time.Minute).Unix(), ExpiresAt: credNow.Add(time.Hour).Unix(),
		ID: "6f1c2b1e-0000-4000-8000-000000000001", Version: 1,
		Scopes: []string{"readers", "writers"}, Scope: "readers writers",
		UserID: "sports.batch", ClientID: "sports.batch",
		Confirmation: &athenz.Confirmation{X509Thumbprint: athenz.CertThumbprint(f.api.cert.Raw)},
	}
	if edit != nil {
		edit(c)
	}
	tok, err := athenz.SignAccessToken(c, key, kid)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// forgedJWT builds a compact JWS with any header and signature bytes.
func forgedJWT(tb testing.TB, header map[string]any, claims any, sign func(signingInput string) []byte) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return in + "." + enc.EncodeToString(sign(in))
}

// roleToken signs a role token for sports.api with roles readers,writers in sports,
// issued a minute before credNow for an hour, changed by edit.
func (f *credFixture) roleToken(tb testing.TB, key crypto.Signer, kid string, edit func(*athenz.RoleToken)) string {
	tb.Helper()
	t := &athenz.RoleToken{
		Domain: "sports", Roles: []string{"readers", "writers"}, Principal: "sports.api", Host: "zts.example.com",
		IssueTime: credNow.Add(-time.Minute), ExpiryTime: credNow.Add(time.Hour), KeyID: kid,
	}
	if edit != nil {
		edit(t)
	}
	s, err := t.Sign(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// writePublicKey writes pub as PEM into dir and returns the path.
func writePublicKey(tb testing.TB, dir, name string, pub crypto.PublicKey, ybase64 bool) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if ybase64 {
		b = []byte(athenz.YEncode(b) + "\n")
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// credMapping maps the Istio namespace prod to the domain sports and one SPIFFE ID
// explicitly, and trusts the Athenz namespaced form in the trust domain athenz.io.
var credMapping = &policy.Mapping{
	Namespaces:         map[string]string{"prod": "sports"},
	Principals:         map[string]string{"spiffe://cluster.local/ns/legacy/sa/app": "sports.legacy"},
	AthenzTrustDomains: []string{"athenz.io"},
}

// credConfig is the test configuration: issuer and audiences checked, both ZTS keys
// (one as athenz.conf's ybase64 PEM), the default order.
func credConfig(tb testing.TB, f *credFixture) CredentialsConfig {
	dir := tb.TempDir()
	return CredentialsConfig{
		AccessToken: AccessTokenConfig{Issuer: credIssuer, Audiences: []string{"sports", "media"}},
		RoleToken: RoleTokenConfig{PublicKeys: map[string]string{
			"zts.ec":  writePublicKey(tb, dir, "zts-ec.pem", f.ztsEC.Public(), false),
			"zts.rsa": writePublicKey(tb, dir, "zts-rsa.pem", f.rsa.Public(), true),
		}},
	}
}

func newCredAuthenticator(tb testing.TB, f *credFixture, edit func(*CredentialsConfig)) *Authenticator {
	tb.Helper()
	cfg := credConfig(tb, f)
	if edit != nil {
		edit(&cfg)
	}
	a, err := NewAuthenticator(cfg, credMapping, WithAccessTokenKeys(f.keys), WithClock(func() time.Time { return credNow }))
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// credInput is a request with the given credential headers and peer.
func credInput(headers map[string]string, principal, cert string) *Input {
	h := map[string]string{":method": "GET", ":path": "/public/x", "user-agent": "test"}
	for k, v := range headers {
		h[k] = v
	}
	return &Input{Method: "GET", Path: "/public/x", Host: "sports.example.com", Headers: h, SourcePrincipal: principal, SourceCertificate: cert}
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func roleAuth(tok string) map[string]string { return map[string]string{"athenz-role-auth": tok} }

type credCase struct {
	name   string
	cfg    func(*CredentialsConfig) // nil: credConfig
	in     *Input
	want   Caller
	reason string // "": success
}

// runCredCases authenticates each case and checks the caller or the reason. A failure
// must be a *CredentialError with a declared reason whose text quotes no credential.
func runCredCases(t *testing.T, f *credFixture, cases []credCase) {
	t.Helper()
	reasons := CredentialReasons()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newCredAuthenticator(t, f, tc.cfg)
			got, err := a.Authenticate(context.Background(), tc.in)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if !callersEqual(got, tc.want) {
					t.Fatalf("caller = %+v, want %+v", got, tc.want)
				}
				return
			}
			var ce *CredentialError
			if !errors.As(err, &ce) {
				t.Fatalf("Authenticate = %+v, %v; want a *CredentialError %s", got, err, tc.reason)
			}
			if ce.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q (error: %v)", ce.Reason, tc.reason, err)
			}
			if !slices.Contains(reasons, ce.Reason) {
				t.Errorf("reason %q is not in CredentialReasons", ce.Reason)
			}
			if !callersEqual(got, Caller{}) {
				t.Errorf("caller %+v returned with an error", got)
			}
			assertNoCredentialText(t, err, tc.in)
		})
	}
}

func callersEqual(a, b Caller) bool {
	return a.Principal == b.Principal && a.TokenDomain == b.TokenDomain && a.Source == b.Source && slices.Equal(a.Roles, b.Roles)
}

// assertNoCredentialText fails when an error message repeats a token or a signature.
func assertNoCredentialText(t *testing.T, err error, in *Input) {
	t.Helper()
	if in == nil {
		return
	}
	msg := err.Error()
	for _, name := range []string{"authorization", "athenz-role-auth"} {
		v := in.Headers[name]
		if len(v) < 24 {
			continue
		}
		if strings.Contains(msg, v) || strings.Contains(msg, strings.TrimPrefix(v, "Bearer ")) {
			t.Errorf("error quotes the %s header: %s", name, msg)
		}
		if i := strings.LastIndexAny(v, ".="); i > 0 && len(v)-i > 16 && strings.Contains(msg, v[i+1:]) {
			t.Errorf("error quotes the %s signature: %s", name, msg)
		}
	}
}

func TestCredAccessToken(t *testing.T) {
	f := credKeys(t)
	valid := f.accessToken(t, f.ec, "ec-1", nil)
	want := Caller{Principal: "sports.batch", TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceAccessToken}
	unbound := f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) { c.Confirmation = nil })
	boundElsewhere := f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
		c.Confirmation = &athenz.Confirmation{X509Thumbprint: athenz.CertThumbprint(f.otherSvc.cert.Raw)}
	})
	claims := map[string]any{"iss": credIssuer, "sub": "sports.batch", "aud": "sports", "iat": credNow.Unix() - 60, "exp": credNow.Unix() + 3600, "scp": []string{"admins"}}
	pubDER, err := x509.MarshalPKIXPublicKey(f.ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(key []byte) func(string) []byte {
		return func(in string) []byte {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(in))
			return m.Sum(nil)
		}
	}
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+credIssuer+`","sub":"sports.admin","aud":"sports","iat":1,"exp":99999999999,"scp":["admins"]}`)) + "." + parts[2]
	yes, no := true, false

	runCredCases(t, f, []credCase{
		{name: "ES256 bound to the peer certificate", in: credInput(bearer(valid), f.api.uri, f.api.enc), want: want},
		{name: "RS256 bound to the peer certificate", in: credInput(bearer(f.accessToken(t, f.rsa, "rsa-1", nil)), f.api.uri, f.api.enc), want: want},
		{name: "bound token without a peer certificate", in: credInput(bearer(valid), "", ""), want: want},
		{name: "unbound token without a peer certificate", in: credInput(bearer(unbound), f.api.uri, ""), want: want},
		{name: "tab after the scheme", in: credInput(map[string]string{"authorization": "Bearer\t" + valid}, "", f.api.enc), want: want},
		{name: "scheme is case-insensitive", in: credInput(map[string]string{"authorization": "bearer  " + valid + " "}, "", f.api.enc), want: want},
		{name: "principal falls back to client_id",
			in:   credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) { c.Subject = "" })), "", f.api.enc),
			want: want},
		{name: "roles fall back to scope",
			in:   credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) { c.Scopes = nil })), "", f.api.enc),
			want: want},
		{name: "token wins over the mTLS identity", in: credInput(bearer(valid), f.api.uri, f.api.enc), want: want},
		{name: "alg none", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "none", "kid": "ec-1", "typ": "at+jwt"}, claims, func(string) []byte { return []byte{0} })), "", ""),
			reason: "access_token_unsupported_algorithm"},
		{name: "alg none without a signature", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "none", "kid": "ec-1", "typ": "at+jwt"}, claims, func(string) []byte { return nil })), "", ""),
			reason: "access_token_malformed"},
		{name: "HS256 keyed with the public key PEM", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "HS256", "kid": "ec-1", "typ": "at+jwt"}, claims, hs256(pubPEM))), "", ""),
			reason: "access_token_unsupported_algorithm"},
		{name: "HS256 keyed with the public key DER", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "HS256", "kid": "ec-1", "typ": "at+jwt"}, claims, hs256(pubDER))), "", ""),
			reason: "access_token_unsupported_algorithm"},
		{name: "ES256 header on an RSA key", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "ES256", "kid": "rsa-1", "typ": "at+jwt"}, claims, func(string) []byte { return make([]byte, 64) })), "", ""),
			reason: "access_token_unsupported_algorithm"},
		{name: "unknown kid", in: credInput(bearer(f.accessToken(t, f.other, "ec-9", nil)), "", f.api.enc), reason: "access_token_unknown_key"},
		{name: "signed by another key under a known kid", in: credInput(bearer(f.accessToken(t, f.other, "ec-1", nil)), "", f.api.enc), reason: "access_token_bad_signature"},
		{name: "payload swapped under a valid signature", in: credInput(bearer(tampered), "", ""), reason: "access_token_bad_signature"},
		{name: "expired", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
			c.IssuedAt, c.ExpiresAt = credNow.Add(-2*time.Hour).Unix(), credNow.Add(-2*time.Minute).Unix()
		})), "", f.api.enc), reason: "access_token_expired"},
		{name: "issued in the future", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
			c.IssuedAt = credNow.Add(5 * time.Minute).Unix()
		})), "", f.api.enc), reason: "access_token_not_yet_valid"},
		{name: "nbf in the future", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
			c.NotBefore = credNow.Add(5 * time.Minute).Unix()
		})), "", f.api.enc), reason: "access_token_not_yet_valid"},
		{name: "within the skew", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
			c.IssuedAt = credNow.Add(50 * time.Second).Unix()
		})), "", f.api.enc), want: want},
		{name: "wrong audience", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) { c.Audience = "weather" })), "", f.api.enc),
			reason: "access_token_wrong_audience"},
		{name: "wrong issuer", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) { c.Issuer = "https://evil.example.com/zts/v1" })), "", f.api.enc),
			reason: "access_token_wrong_issuer"},
		{name: "id token type", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "ES256", "kid": "ec-1", "typ": "JWT"}, claims, es256(t, f.ec))), "", ""),
			reason: "access_token_wrong_type"},
		{name: "correctly signed forgery with at+jwt", in: credInput(bearer(forgedJWT(t, map[string]any{"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"}, claims, es256(t, f.ec))), "", ""),
			want: Caller{Principal: "sports.batch", TokenDomain: "sports", Roles: []string{"admins"}, Source: SourceAccessToken}},
		{name: "bound to another certificate", in: credInput(bearer(boundElsewhere), f.api.uri, f.api.enc), reason: "access_token_certificate_binding"},
		{name: "bound to another certificate, binding not required", cfg: func(c *CredentialsConfig) { c.AccessToken.RequireBinding = &no },
			in: credInput(bearer(boundElsewhere), f.api.uri, f.api.enc), reason: "access_token_certificate_binding"},
		{name: "unbound with a peer certificate", in: credInput(bearer(unbound), f.api.uri, f.api.enc), reason: "access_token_certificate_binding"},
		{name: "unbound with a peer certificate, binding not required", cfg: func(c *CredentialsConfig) { c.AccessToken.RequireBinding = &no },
			in: credInput(bearer(unbound), f.api.uri, f.api.enc), want: want},
		{name: "binding required and no peer certificate", cfg: func(c *CredentialsConfig) { c.AccessToken.RequireBinding = &yes },
			in: credInput(bearer(valid), f.api.uri, ""), reason: "access_token_certificate_binding"},
		{name: "not a JWT", in: credInput(bearer("opaque-token-for-the-upstream"), "", ""), reason: "access_token_malformed"},
		{name: "empty bearer", in: credInput(map[string]string{"authorization": "Bearer"}, f.api.uri, ""), reason: "access_token_malformed"},
		{name: "two tokens joined by Envoy", in: credInput(map[string]string{"authorization": "Bearer " + valid + ",Bearer " + valid}, "", f.api.enc), reason: "access_token_malformed"},
		{name: "oversized", in: credInput(bearer(strings.Repeat("A", MaxTokenBytes+1)), "", ""), reason: "access_token_too_large"},
		{name: "oversized with padding", in: credInput(map[string]string{"authorization": "Bearer " + strings.Repeat(" ", 64<<10) + "x"}, "", ""), reason: "access_token_too_large"},
		{name: "invalid token does not fall through to mTLS", in: credInput(bearer(boundElsewhere), f.api.uri, f.api.enc), reason: "access_token_certificate_binding"},
		{name: "invalid token does not fall through to a role token",
			in:     credInput(map[string]string{"authorization": "Bearer x.y.z", "athenz-role-auth": f.roleToken(t, f.ztsEC, "zts.ec", nil)}, "", ""),
			reason: "access_token_malformed"},
		{name: "Basic authorization is not ours", in: credInput(map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, f.api.uri, f.api.enc),
			want: Caller{Principal: "sports.api", Source: SourceMTLS}},
		{name: "access tokens off: the header is ignored", cfg: func(c *CredentialsConfig) { c.Order = []string{SourceMTLS} },
			in: credInput(bearer("garbage"), f.api.uri, f.api.enc), want: Caller{Principal: "sports.api", Source: SourceMTLS}},
	})
}

func TestCredRoleToken(t *testing.T) {
	f := credKeys(t)
	valid := f.roleToken(t, f.ztsEC, "zts.ec", nil)
	want := Caller{Principal: "sports.api", TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceRoleToken}
	runCredCases(t, f, []credCase{
		{name: "ECDSA ZTS key", in: credInput(roleAuth(valid), "", ""), want: want},
		{name: "RSA ZTS key from ybase64 PEM", in: credInput(roleAuth(f.roleToken(t, f.rsa, "zts.rsa", nil)), "", ""), want: want},
		{name: "role token wins over the peer", in: credInput(roleAuth(valid), f.otherSvc.uri, f.otherSvc.enc), want: want},
		{name: "no principal", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", func(r *athenz.RoleToken) { r.Principal = "" })), "", ""),
			want: Caller{TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceRoleToken}},
		{name: "bad signature", in: credInput(roleAuth(strings.Replace(valid, "r=readers,writers", "r=readers,admins", 1)), "", ""), reason: "role_token_bad_signature"},
		{name: "signed by another key", in: credInput(roleAuth(f.roleToken(t, f.other, "zts.ec", nil)), "", ""), reason: "role_token_bad_signature"},
		{name: "expired", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", func(r *athenz.RoleToken) {
			r.IssueTime, r.ExpiryTime = credNow.Add(-2*time.Hour), credNow.Add(-time.Second)
		})), "", ""), reason: "role_token_expired"},
		{name: "issued in the future", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", func(r *athenz.RoleToken) {
			r.IssueTime, r.ExpiryTime = credNow.Add(time.Hour), credNow.Add(2*time.Hour)
		})), "", ""), reason: "role_token_not_yet_valid"},
		{name: "lifetime over 30 days", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", func(r *athenz.RoleToken) {
			r.ExpiryTime = credNow.Add(40 * 24 * time.Hour)
		})), "", ""), reason: "role_token_lifetime_too_long"},
		{name: "unknown key", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.9", nil)), "", ""), reason: "role_token_unknown_key"},
		{name: "garbage", in: credInput(roleAuth("hello"), "", ""), reason: "role_token_malformed"},
		{name: "empty", in: credInput(roleAuth(""), "", ""), reason: "role_token_malformed"},
		{name: "unsigned", in: credInput(roleAuth("v=Z1;d=sports;r=admins;p=sports.api;t=1;e=99999999999;k=zts.ec"), "", ""), reason: "role_token_malformed"},
		{name: "repeated field", in: credInput(roleAuth("v=Z1;d=sports;r=readers;r=admins;t=1;e=2;k=zts.ec;s=AAAA"), "", ""), reason: "role_token_malformed"},
		{name: "signature tail", in: credInput(roleAuth(valid+";bk=0;bs=AAAA"), "", ""), reason: "role_token_malformed"},
		{name: "two tokens joined by Envoy", in: credInput(roleAuth(valid+","+valid), "", ""), reason: "role_token_malformed"},
		{name: "n-token in the role header", in: credInput(roleAuth("v=S1;d=sports;n=api;k=0;a=aaaa;t=1;e=2;s=AAAA"), "", ""), reason: "role_token_malformed"},
		{name: "oversized", in: credInput(roleAuth("v=Z1;d=sports;r="+strings.Repeat("a,", MaxTokenBytes/2)+"a;s=AAAA"), "", ""), reason: "role_token_too_large"},
		{name: "invalid role token does not fall through to mTLS", in: credInput(roleAuth("hello"), f.api.uri, f.api.enc), reason: "role_token_malformed"},
		{name: "role tokens off: the header is ignored", cfg: func(c *CredentialsConfig) { c.RoleToken.PublicKeys = nil },
			in: credInput(roleAuth("hello"), f.api.uri, ""), want: Caller{Principal: "sports.api", Source: SourceMTLS}},
	})
}

func TestCredMTLSAndRoleCert(t *testing.T) {
	f := credKeys(t)
	api := Caller{Principal: "sports.api", Source: SourceMTLS}
	mtlsOnly := func(c *CredentialsConfig) { c.Order = []string{SourceMTLS} }
	off := false
	other := f.otherSvc
	runCredCases(t, f, []credCase{
		{name: "principal only, Athenz form", in: credInput(nil, "spiffe://sports/sa/api", ""), want: api},
		{name: "principal only, namespaced Athenz form", in: credInput(nil, "spiffe://athenz.io/ns/default/sa/sports.api", ""), want: api},
		{name: "principal only, a service account of Istio's trust domain named like a system service",
			in: credInput(nil, "spiffe://cluster.local/ns/prod/sa/sys.auth.zts", ""), reason: "invalid_principal"},
		{name: "principal only, Istio form mapped by namespace", in: credInput(nil, "spiffe://cluster.local/ns/prod/sa/frontend", ""),
			want: Caller{Principal: "sports.frontend", Source: SourceMTLS}},
		{name: "principal only, explicit mapping", in: credInput(nil, "spiffe://cluster.local/ns/legacy/sa/app", ""),
			want: Caller{Principal: "sports.legacy", Source: SourceMTLS}},
		{name: "principal only, Istio form without a mapping", in: credInput(nil, "spiffe://cluster.local/ns/dev/sa/frontend", ""),
			want: Caller{Source: SourceMTLS}},
		{name: "principal only, role SPIFFE ID", in: credInput(nil, "spiffe://sports/ra/readers", ""),
			want: Caller{TokenDomain: "sports", Roles: []string{"readers"}, Source: SourceRoleCert}},
		{name: "principal only, role SPIFFE ID with role certificates off", cfg: mtlsOnly, in: credInput(nil, "spiffe://sports/ra/readers", ""),
			reason: ReasonInvalidPrincipal},
		{name: "unknown SPIFFE form", in: credInput(nil, "spiffe://sports/svc/api", ""), reason: ReasonInvalidPrincipal},
		{name: "SPIFFE ID with extra segments", in: credInput(nil, "spiffe://sports/sa/api/../admin", ""), reason: ReasonInvalidPrincipal},
		{name: "not a SPIFFE ID", in: credInput(nil, "CN=sports.api,O=Athenz", ""), reason: ReasonInvalidPrincipal},
		{name: "mapped to an invalid name", in: credInput(nil, "spiffe://sports/sa/a:b", ""), reason: ReasonInvalidPrincipal},
		{name: "oversized principal", in: credInput(nil, "spiffe://sports/sa/"+strings.Repeat("a", MaxPrincipalBytes), ""), reason: ReasonInvalidPrincipal},
		{name: "certificate and matching principal", in: credInput(nil, f.api.uri, f.api.enc), want: api},
		{name: "certificate only", in: credInput(nil, "", f.api.enc), want: api},
		{name: "plain PEM certificate", in: credInput(nil, "", pemOf(f.api.cert)), want: api},
		{name: "certificate without URI SANs, subject principal", in: credInput(nil, "CN=sports.api,O=Athenz", f.noURI.enc), want: api},
		{name: "certificate without URI SANs, other subject", in: credInput(nil, "CN=sports.admin,O=Athenz", f.noURI.enc), reason: ReasonPrincipalMismatch},
		{name: "principal and certificate disagree", in: credInput(nil, "spiffe://sports/sa/admin", f.api.enc), reason: ReasonPrincipalMismatch},
		{name: "principal of another certificate", in: credInput(nil, other.uri, f.api.enc), reason: ReasonPrincipalMismatch},
		{name: "Istio certificate mapped", in: credInput(nil, f.istio.uri, f.istio.enc), want: Caller{Principal: "sports.frontend", Source: SourceMTLS}},
		{name: "Istio certificate with a CN", in: credInput(nil, f.istioCN.uri, f.istioCN.enc), want: Caller{Principal: "sports.frontend", Source: SourceMTLS}},
		{name: "certificate CN and SPIFFE ID disagree", in: credInput(nil, f.badIdentity.uri, f.badIdentity.enc), reason: ReasonCertificateIdentity},
		{name: "bad identity with a valid token", in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
			c.Confirmation.X509Thumbprint = athenz.CertThumbprint(f.badIdentity.cert.Raw)
		})), f.badIdentity.uri, f.badIdentity.enc), want: Caller{Principal: "sports.batch", TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceAccessToken}},
		{name: "role certificate", in: credInput(nil, f.role.uri, f.role.enc),
			want: Caller{Principal: "sports.api", TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceRoleCert}},
		{name: "role certificate as a service identity", cfg: mtlsOnly, in: credInput(nil, f.role.uri, f.role.enc), want: api},
		{name: "role certificate mixing domains", in: credInput(nil, f.mixedRole.uri, f.mixedRole.enc), reason: ReasonRoleCertMixedDomains},
		{name: "garbage certificate", in: credInput(nil, "", "not a certificate"), reason: ReasonCertificateMalformed},
		{name: "bad percent escape", in: credInput(nil, "", "%zz"), reason: ReasonCertificateMalformed},
		{name: "PEM of another type", in: credInput(nil, "", credURLEncode(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))), reason: ReasonCertificateMalformed},
		{name: "PEM of garbage DER", in: credInput(nil, "", credURLEncode(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}))), reason: ReasonCertificateMalformed},
		{name: "two certificates", in: credInput(nil, "", f.api.enc+other.enc), reason: ReasonCertificateMalformed},
		{name: "truncated certificate", in: credInput(nil, "", f.api.enc[:len(f.api.enc)/2]), reason: ReasonCertificateMalformed},
		{name: "oversized certificate", in: credInput(nil, "", strings.Repeat("A", MaxCertificateBytes+1)), reason: ReasonCertificateTooLarge},
		{name: "garbage certificate with a valid role token", in: credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", nil)), "", "garbage"), reason: ReasonCertificateMalformed},
		{name: "mTLS off: the peer is ignored", cfg: func(c *CredentialsConfig) { c.MTLS.Enabled = &off }, in: credInput(nil, f.api.uri, ""), reason: ReasonNoCredentials},
		{name: "mTLS and access tokens off: the certificate is not read", cfg: func(c *CredentialsConfig) { c.MTLS.Enabled = &off; c.Order = []string{SourceRoleToken} },
			in:   credInput(roleAuth(f.roleToken(t, f.ztsEC, "zts.ec", nil)), "", "garbage"),
			want: Caller{Principal: "sports.api", TokenDomain: "sports", Roles: []string{"readers", "writers"}, Source: SourceRoleToken}},
		{name: "mTLS first in the order", cfg: func(c *CredentialsConfig) { c.Order = []string{SourceMTLS, SourceAccessToken} },
			in: credInput(bearer(f.accessToken(t, f.ec, "ec-1", nil)), f.api.uri, f.api.enc), want: api},
		{name: "no credentials", in: credInput(nil, "", ""), reason: ReasonNoCredentials},
		{name: "no input", in: nil, reason: ReasonNoCredentials},
	})
}

// es256 signs a JWS signing input with key, raw R||S.
func es256(tb testing.TB, key *ecdsa.PrivateKey) func(string) []byte {
	return func(in string) []byte {
		h := sha256.Sum256([]byte(in))
		r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
		if err != nil {
			tb.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func TestCredErrorIsAndText(t *testing.T) {
	f := credKeys(t)
	a := newCredAuthenticator(t, f, nil)
	tok := f.accessToken(t, f.ec, "ec-1", func(c *athenz.AccessTokenClaims) {
		c.ExpiresAt = credNow.Add(-time.Hour).Unix()
		c.IssuedAt = c.ExpiresAt - 60
	})
	_, err := a.Authenticate(context.Background(), credInput(bearer(tok), "", ""))
	if !errors.Is(err, athenz.ErrTokenExpired) {
		t.Fatalf("errors.Is(%v, ErrTokenExpired) = false", err)
	}
	if got := err.Error(); !strings.HasPrefix(got, "credential access_token: access_token_expired: ") {
		t.Errorf("Error() = %q", got)
	}
	_, err = a.Authenticate(context.Background(), credInput(nil, "", ""))
	if got := err.Error(); got != "credential: no_credentials" {
		t.Errorf("Error() = %q", got)
	}
}

// TestCredTokenCodes keeps tokenCodes in step with athenz.TokenErrorReason.
func TestCredTokenCodes(t *testing.T) {
	for _, err := range []error{
		athenz.ErrTokenMalformed, athenz.ErrUnsupportedAlgorithm, athenz.ErrWrongTokenType, athenz.ErrUnknownKey,
		athenz.ErrUnsupportedKey, athenz.ErrBadSignature, athenz.ErrTokenExpired, athenz.ErrTokenNotYetValid,
		athenz.ErrTokenLifetime, athenz.ErrWrongIssuer, athenz.ErrWrongAudience, athenz.ErrCertificateBinding, errors.New("other"),
	} {
		if code := athenz.TokenErrorReason(err); !slices.Contains(tokenCodes, code) {
			t.Errorf("athenz reason %q for %v is not in tokenCodes", code, err)
		}
	}
	if r := tokenError(SourceRoleToken, errors.New("x")).Reason; r != "role_token_invalid" {
		t.Errorf("unknown error reason = %q", r)
	}
}

func TestCredNewAuthenticatorErrors(t *testing.T) {
	f := credKeys(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*CredentialsConfig)
		want string
	}{
		{"missing role token key file", func(c *CredentialsConfig) { c.RoleToken.PublicKeys["zts.x"] = filepath.Join(dir, "nope.pem") }, `role token key "zts.x"`},
		{"garbage role token key", func(c *CredentialsConfig) { c.RoleToken.PublicKeys["zts.x"] = garbage }, "neither PEM nor ybase64"},
		{"unknown source", func(c *CredentialsConfig) { c.Order = []string{"cookie"} }, `unknown source "cookie"`},
		{"missing JWKS file", func(c *CredentialsConfig) { c.AccessToken.JWKSFile = filepath.Join(dir, "nope.json") }, "access token keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := credConfig(t, f)
			tc.edit(&cfg)
			_, err := NewAuthenticator(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewAuthenticator error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCredWithMappingSharesKeys(t *testing.T) {
	f := credKeys(t)
	a := newCredAuthenticator(t, f, nil)
	b := a.WithMapping(&policy.Mapping{Namespaces: map[string]string{"dev": "media"}})
	in := credInput(nil, "spiffe://cluster.local/ns/dev/sa/web", "")
	if c, err := a.Authenticate(context.Background(), in); err != nil || c.Principal != "" {
		t.Fatalf("original mapping: %+v, %v", c, err)
	}
	if c, err := b.Authenticate(context.Background(), in); err != nil || c.Principal != "media.web" {
		t.Fatalf("new mapping: %+v, %v", c, err)
	}
	tok := f.accessToken(t, f.ec, "ec-1", nil)
	if c, err := b.Authenticate(context.Background(), credInput(bearer(tok), "", "")); err != nil || c.Source != SourceAccessToken {
		t.Fatalf("token through the new mapping: %+v, %v", c, err)
	}
}

func BenchmarkAuthenticateAccessTokenES256Bound(b *testing.B) {
	f := credKeys(b)
	a := newCredAuthenticator(b, f, nil)
	in := credInput(bearer(f.accessToken(b, f.ec, "ec-1", nil)), f.api.uri, f.api.enc)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
