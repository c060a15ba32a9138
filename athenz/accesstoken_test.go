package athenz_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

const testIssuer = "https://zts.example.com/zts/v1"

// testClaims returns ZTS-like claims issued at testNow for an hour, bound to certDER.
func testClaims(certDER []byte) *athenz.AccessTokenClaims {
	c := &athenz.AccessTokenClaims{
		Issuer: testIssuer, Subject: "media.api", Audience: "sports", IssuedAt: testNow.Unix(),
		ExpiresAt: testNow.Add(time.Hour).Unix(), AuthTime: testNow.Unix(), ID: "6f4f9a3c-0b7e-4d8e-9a63-3c9d3e1f2a10",
		Version: 1, Scopes: []string{"readers", "writers"}, Scope: "readers writers", UserID: "media.api", ClientID: "media.api",
	}
	if certDER != nil {
		c.Confirmation = &athenz.Confirmation{X509Thumbprint: athenz.CertThumbprint(certDER)}
	}
	return c
}

// jwsSigner signs JWS signing input for a hand-made token.
type jwsSigner func(input []byte) []byte

func esSigner(key *ecdsa.PrivateKey, h crypto.Hash) jwsSigner {
	return func(input []byte) []byte {
		d := h.New()
		d.Write(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, d.Sum(nil))
		if err != nil {
			panic(err)
		}
		size := (key.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	}
}

func rsSigner(key *rsa.PrivateKey) jwsSigner {
	return func(input []byte) []byte {
		d := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
}

func hsSigner(secret []byte) jwsSigner {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	}
}

// rawJWS builds a compact JWS from a header (marshalled unless it is a string) and raw
// payload bytes.
func rawJWS(t testing.TB, header any, payload string, sign jwsSigner) string {
	t.Helper()
	h, ok := header.(string)
	if !ok {
		b, err := json.Marshal(header)
		if err != nil {
			t.Fatal(err)
		}
		h = string(b)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(h)) + "." + enc.EncodeToString([]byte(payload))
	return input + "." + enc.EncodeToString(sign([]byte(input)))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCertThumbprint(t *testing.T) {
	// SHA-256 of the empty string, base64url without padding.
	if got := athenz.CertThumbprint(nil); got != "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" {
		t.Errorf("CertThumbprint(nil) = %q", got)
	}
}

func TestSignAccessTokenRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		key     crypto.Signer
		wantAlg string
		sigLen  int
	}{
		{"p256", testP256(), "ES256", 64},
		{"p384", testP384(), "ES384", 96},
		{"p521", testP521(), "ES512", 132},
		{"rsa", testRSA2048(), "RS256", 256},
	}
	var algs []string
	for _, tc := range tests {
		algs = append(algs, tc.wantAlg)
	}
	if !slices.Equal(slices.Sorted(slices.Values(algs)), slices.Sorted(slices.Values(athenz.JWSAlgorithms()))) {
		t.Errorf("cases cover %v, the allow-list is %v", algs, athenz.JWSAlgorithms())
	}
	cert := []byte("client certificate DER")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := athenz.SignAccessToken(testClaims(cert), tc.key, "zts.0")
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(tok, ".")
			header, _ := base64.RawURLEncoding.DecodeString(parts[0])
			if want := `{"alg":"` + tc.wantAlg + `","kid":"zts.0","typ":"at+jwt"}`; string(header) != want {
				t.Errorf("header %s, want %s", header, want)
			}
			if sig, _ := base64.RawURLEncoding.DecodeString(parts[2]); len(sig) != tc.sigLen {
				t.Errorf("signature is %d bytes, want %d (raw R||S for ECDSA)", len(sig), tc.sigLen)
			}
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			for _, want := range []string{`"aud":"sports"`, `"scp":["readers","writers"]`, `"iat":1700000000`, `"exp":1700003600`, `"cnf":{"x5t#S256":"`} {
				if !strings.Contains(string(payload), want) {
					t.Errorf("payload %s lacks %s", payload, want)
				}
			}
			got, err := athenz.VerifyAccessToken(tok, athenz.StaticKeySet{"zts.0": tc.key.Public()},
				athenz.AccessTokenOptions{Issuer: testIssuer, Audiences: []string{"sports"}, Now: testNow, CertDER: cert, RequireBinding: true})
			if err != nil {
				t.Fatal(err)
			}
			if mustJSON(t, got) != mustJSON(t, testClaims(cert)) {
				t.Errorf("claims changed:\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, testClaims(cert)))
			}
		})
	}
}

func TestSignAccessTokenRefuses(t *testing.T) {
	tests := []struct {
		name   string
		claims *athenz.AccessTokenClaims
		key    crypto.Signer
		kid    string
		want   string
	}{
		{"nil claims", nil, testP256(), "k", "no claims"},
		{"no kid", testClaims(nil), testP256(), "", "kid"},
		{"no audience", &athenz.AccessTokenClaims{IssuedAt: 1, ExpiresAt: 2}, testP256(), "k", "aud"},
		{"exp before iat", &athenz.AccessTokenClaims{Audience: "d", IssuedAt: 2, ExpiresAt: 2}, testP256(), "k", "iat < exp"},
		{"weak key", testClaims(nil), testRSA1024(), "k", "RSA key of 1024 bits"},
		{"p224 key", testClaims(nil), testP224(), "k", "P-224"},
		{"nil key", testClaims(nil), nil, "k", "no key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := athenz.SignAccessToken(tc.claims, tc.key, tc.kid); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestVerifyAccessTokenRefusals(t *testing.T) {
	ec, rs := testP256(), testRSA2048()
	keys := athenz.StaticKeySet{"ec": ec.Public(), "rsa": rs.Public(), "p384": testP384().Public()}
	cert, otherCert := []byte("the client certificate"), []byte("another certificate")
	good := mustJSON(t, testClaims(cert))
	hdr := func(alg, kid string) map[string]string {
		return map[string]string{"alg": alg, "kid": kid, "typ": "at+jwt"}
	}
	ecSign := esSigner(ec, crypto.SHA256)
	pubDER, _ := x509.MarshalPKIXPublicKey(ec.Public())
	rsaDER, _ := x509.MarshalPKIXPublicKey(rs.Public())
	claimsWith := func(edit func(*athenz.AccessTokenClaims)) string {
		c := testClaims(cert)
		edit(c)
		return mustJSON(t, c)
	}
	base := athenz.AccessTokenOptions{Issuer: testIssuer, Audiences: []string{"sports", "media"}, Now: testNow, CertDER: cert}
	tests := []struct {
		name    string
		token   string
		opts    func(*athenz.AccessTokenOptions)
		wantErr error // nil: must verify
		reason  string
	}{
		{"valid es256", rawJWS(t, hdr("ES256", "ec"), good, ecSign), nil, nil, ""},
		{"valid rs256", rawJWS(t, hdr("RS256", "rsa"), good, rsSigner(rs)), nil, nil, ""},
		{"alg none", rawJWS(t, hdr("none", "ec"), good, func([]byte) []byte { return []byte{0} }), nil, athenz.ErrUnsupportedAlgorithm, "unsupported_algorithm"},
		{"alg None", rawJWS(t, hdr("None", "ec"), good, ecSign), nil, athenz.ErrUnsupportedAlgorithm, "unsupported_algorithm"},
		{"hs256 with ec public key DER", rawJWS(t, hdr("HS256", "ec"), good, hsSigner(pubDER)), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"hs256 with rsa public key DER", rawJWS(t, hdr("HS256", "rsa"), good, hsSigner(rsaDER)), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"ps256", rawJWS(t, hdr("PS256", "rsa"), good, rsSigner(rs)), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"rs256 header on ec key", rawJWS(t, hdr("RS256", "ec"), good, rsSigner(rs)), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"es256 header on rsa key", rawJWS(t, hdr("ES256", "rsa"), good, ecSign), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"es384 header on p256 key", rawJWS(t, hdr("ES384", "ec"), good, esSigner(ec, crypto.SHA384)), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"es256 header on p384 key", rawJWS(t, hdr("ES256", "p384"), good, ecSign), nil, athenz.ErrUnsupportedAlgorithm, ""},
		{"unknown kid", rawJWS(t, hdr("ES256", "zts.9"), good, ecSign), nil, athenz.ErrUnknownKey, "unknown_key"},
		{"no kid", rawJWS(t, map[string]string{"alg": "ES256", "typ": "at+jwt"}, good, ecSign), nil, athenz.ErrUnknownKey, ""},
		{"embedded jwk is ignored", rawJWS(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "attacker", "jwk": map[string]string{"kty": "EC"}}, good, esSigner(testP256b(), crypto.SHA256)), nil, athenz.ErrUnknownKey, ""},
		{"signed by another key", rawJWS(t, hdr("ES256", "ec"), good, esSigner(testP256b(), crypto.SHA256)), nil, athenz.ErrBadSignature, "bad_signature"},
		{"der ecdsa signature", rawJWS(t, hdr("ES256", "ec"), good, func(in []byte) []byte {
			d := sha256.Sum256(in)
			s, _ := ecdsa.SignASN1(rand.Reader, ec, d[:])
			return s
		}), nil, athenz.ErrBadSignature, ""},
		{"payload swapped", swapPayload(t, rawJWS(t, hdr("ES256", "ec"), good, ecSign), claimsWith(func(c *athenz.AccessTokenClaims) { c.Scopes = []string{"admin"} })), nil, athenz.ErrBadSignature, ""},
		{"expired", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.Now = testNow.Add(time.Hour + 31*time.Second) }, athenz.ErrTokenExpired, "expired"},
		{"expired within skew", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.Now = testNow.Add(time.Hour + 29*time.Second) }, nil, ""},
		{"expired, no skew", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.Now, o.Skew = testNow.Add(time.Hour+time.Second), -1 }, athenz.ErrTokenExpired, ""},
		{"issued in the future", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.Now = testNow.Add(-31 * time.Second) }, athenz.ErrTokenNotYetValid, "not_yet_valid"},
		{"issued within skew", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.Now = testNow.Add(-29 * time.Second) }, nil, ""},
		{"nbf in the future", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.NotBefore = testNow.Add(time.Minute).Unix() }), ecSign), nil, athenz.ErrTokenNotYetValid, ""},
		{"wrong issuer", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Issuer = "https://evil/zts/v1" }), ecSign), nil, athenz.ErrWrongIssuer, "wrong_issuer"},
		{"any issuer", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Issuer = "x" }), ecSign), func(o *athenz.AccessTokenOptions) { o.Issuer = "" }, nil, ""},
		{"wrong audience", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Audience = "finance" }), ecSign), nil, athenz.ErrWrongAudience, "wrong_audience"},
		{"second audience", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Audience = "media" }), ecSign), nil, nil, ""},
		{"cnf mismatch", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.CertDER = otherCert }, athenz.ErrCertificateBinding, "certificate_binding"},
		{"cnf, no cert, binding optional", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.CertDER = nil }, nil, ""},
		{"cnf, no cert, binding required", rawJWS(t, hdr("ES256", "ec"), good, ecSign), func(o *athenz.AccessTokenOptions) { o.CertDER, o.RequireBinding = nil, true }, athenz.ErrCertificateBinding, ""},
		{"no cnf, cert, binding optional", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Confirmation = nil }), ecSign), nil, nil, ""},
		{"no cnf, cert, binding required", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Confirmation = nil }), ecSign), func(o *athenz.AccessTokenOptions) { o.RequireBinding = true }, athenz.ErrCertificateBinding, ""},
		{"typ jwt refused", rawJWS(t, map[string]string{"alg": "ES256", "kid": "ec", "typ": "JWT"}, good, ecSign), nil, athenz.ErrWrongTokenType, "wrong_type"},
		{"typ jwt legacy", rawJWS(t, map[string]string{"alg": "ES256", "kid": "ec", "typ": "JWT"}, good, ecSign), func(o *athenz.AccessTokenOptions) { o.AllowLegacyType = true }, nil, ""},
		{"no typ refused", rawJWS(t, map[string]string{"alg": "ES256", "kid": "ec"}, good, ecSign), nil, athenz.ErrWrongTokenType, ""},
		{"media type", rawJWS(t, map[string]string{"alg": "ES256", "kid": "ec", "typ": "application/AT+JWT"}, good, ecSign), nil, nil, ""},
		{"crit header", rawJWS(t, map[string]any{"alg": "ES256", "kid": "ec", "typ": "at+jwt", "crit": []string{"exp"}}, good, ecSign), nil, athenz.ErrTokenMalformed, "malformed"},
		{"duplicate alg", rawJWS(t, `{"alg":"ES256","kid":"ec","typ":"at+jwt","alg":"none"}`, good, ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"duplicate exp", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"exp":1700003600`, `"exp":1700003600,"exp":1900000000`, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"case variant claim ignored", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"exp":1700003600`, `"exp":1700000001,"EXP":1900000000`, 1), ecSign), func(o *athenz.AccessTokenOptions) { o.Now = testNow.Add(time.Minute) }, athenz.ErrTokenExpired, ""},
		{"aud array", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"aud":"sports"`, `"aud":["sports"]`, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"fractional exp", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"exp":1700003600`, `"exp":1700003600.5`, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"string exp", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"exp":1700003600`, `"exp":"1700003600"`, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"no exp", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"exp":1700003600,`, ``, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"scp string", rawJWS(t, hdr("ES256", "ec"), strings.Replace(good, `"scp":["readers","writers"]`, `"scp":"readers"`, 1), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"bad role name", rawJWS(t, hdr("ES256", "ec"), claimsWith(func(c *athenz.AccessTokenClaims) { c.Scopes = []string{"a b"} }), ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"payload not json", rawJWS(t, hdr("ES256", "ec"), "not json", ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"payload array", rawJWS(t, hdr("ES256", "ec"), "[1]", ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"trailing data", rawJWS(t, hdr("ES256", "ec"), good+"{}", ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"deep nesting", rawJWS(t, hdr("ES256", "ec"), `{"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`, ecSign), nil, athenz.ErrTokenMalformed, ""},
		{"two parts", "eyJhbGciOiJFUzI1NiJ9.e30", nil, athenz.ErrTokenMalformed, ""},
		{"four parts", rawJWS(t, hdr("ES256", "ec"), good, ecSign) + ".x", nil, athenz.ErrTokenMalformed, ""},
		{"json serialization", `{"payload":"e30","signatures":[]}`, nil, athenz.ErrTokenMalformed, ""},
		{"padded base64", padSignature(rawJWS(t, hdr("ES256", "ec"), good, ecSign)), nil, athenz.ErrTokenMalformed, ""},
		{"oversized", rawJWS(t, hdr("ES256", "ec"), `{"x":"`+strings.Repeat("a", athenz.MaxAccessTokenLength)+`"}`, ecSign), nil, athenz.ErrTokenMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := base
			if tc.opts != nil {
				tc.opts(&opts)
			}
			claims, err := athenz.VerifyAccessToken(tc.token, keys, opts)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || claims != nil {
				t.Fatalf("got %v, %v; want error %v", claims, err, tc.wantErr)
			}
			if tc.reason != "" && athenz.TokenErrorReason(err) != tc.reason {
				t.Errorf("TokenErrorReason = %q, want %q", athenz.TokenErrorReason(err), tc.reason)
			}
		})
	}
	if _, err := athenz.VerifyAccessToken(rawJWS(t, hdr("ES256", "ec"), good, ecSign), nil, base); !errors.Is(err, athenz.ErrUnknownKey) {
		t.Errorf("nil key set: %v", err)
	}
}

// swapPayload replaces the payload of a compact JWS, keeping its header and signature.
func swapPayload(t testing.TB, tok, payload string) string {
	t.Helper()
	p := strings.Split(tok, ".")
	p[1] = base64.RawURLEncoding.EncodeToString([]byte(payload))
	return strings.Join(p, ".")
}

// padSignature re-encodes a JWS signature with '=' padding.
func padSignature(tok string) string {
	p := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	p[2] = base64.URLEncoding.EncodeToString(sig)
	return strings.Join(p, ".")
}

func TestTokenErrorReason(t *testing.T) {
	if athenz.TokenErrorReason(nil) != "" || athenz.TokenErrorReason(errors.New("x")) != "invalid" {
		t.Error("nil or foreign error")
	}
	_, err := athenz.ParseNToken("x")
	if athenz.TokenErrorReason(err) != "malformed" {
		t.Errorf("ParseNToken(x): %q", athenz.TokenErrorReason(err))
	}
}
