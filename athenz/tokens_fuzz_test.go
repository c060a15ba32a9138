package athenz_test

import (
	"crypto"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzParseNToken: no input panics; whatever parses has valid names, verifies without
// panicking, and survives Sign and ParseNToken again unchanged.
func FuzzParseNToken(f *testing.F) {
	f.Add(signNToken(f, testP256(), nil))
	f.Add(signNToken(f, testRSA2048(), func(n *athenz.NToken) { n.KeyService, n.IP = "zts", "::1" }))
	f.Add("v=S1;d=cd;n=12345;h=somehost.somecompany.com;a=saltvalue;t=1447361732;e=1447361742;k=0;s=lg5JMqJb9-")
	f.Add("v=U1;d=user;n=joe;a=1;t=1;e=2;s=a;bk=0;bs=b")
	f.Add("v=S1;d=a;d=b;n=c;t=1;e=2;s=x")
	f.Add(";s=")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := athenz.ParseNToken(s)
		if err != nil {
			if athenz.TokenErrorReason(err) != "malformed" {
				t.Fatalf("parse error without ErrTokenMalformed: %v", err)
			}
			return
		}
		if !athenz.IsDomainName(n.Domain) || !athenz.IsSimpleName(n.Name) || !strings.Contains(s, ";s=") || len(s) > athenz.MaxNTokenLength {
			t.Fatalf("accepted %q as %+v", s, n)
		}
		_ = n.Verify(testP256().Public(), testNow, athenz.NTokenOptions{})
		again, err := n.Sign(testP256())
		if err != nil {
			t.Fatalf("cannot re-sign a parsed token %+v: %v", n, err)
		}
		back, err := athenz.ParseNToken(again)
		if err != nil {
			t.Fatalf("re-signed token does not parse: %v", err)
		}
		if back.Principal() != n.Principal() || back.KeyID != n.KeyID || back.Hostname != n.Hostname || back.IP != n.IP ||
			back.KeyService != n.KeyService || (n.Salt != "" && back.Salt != n.Salt) || !back.IssueTime.Equal(n.IssueTime) || !back.ExpiryTime.Equal(n.ExpiryTime) {
			t.Fatalf("round trip changed %+v into %+v", n, back)
		}
	})
}

// FuzzParseRoleToken: as FuzzParseNToken, for role tokens.
func FuzzParseRoleToken(f *testing.F) {
	tok, err := testRoleToken().Sign(testP256())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("v=Z1;d=home.palakas;r=ums.tprofile2;c=1;p=home.palakas.helloworld;h=ip-10-0-5-212;a=537af2983c4092f2;t=1510730580;e=1510737780;k=aws.prod.us-west-2.0;i=209.131.62.126;s=NN9miwROtizzT...")
	f.Add("v=Z1;d=coretech;r=role1,role2;s=signature;d=sports;r=api")
	f.Add("v=Z1;d=d;r=a,,b;c=2;t=1;e=2;s=x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := athenz.ParseRoleToken(s)
		if err != nil {
			if athenz.TokenErrorReason(err) != "malformed" {
				t.Fatalf("parse error without ErrTokenMalformed: %v", err)
			}
			return
		}
		for _, role := range r.Roles {
			if !athenz.IsEntityName(role) {
				t.Fatalf("accepted role %q", role)
			}
		}
		_ = r.Verify(ztsKeys(testP256().Public()), testNow)
		again, err := r.Sign(testP256())
		if err != nil {
			t.Fatalf("cannot re-sign a parsed token %+v: %v", r, err)
		}
		back, err := athenz.ParseRoleToken(again)
		if err != nil {
			t.Fatalf("re-signed token does not parse: %v", err)
		}
		if back.Domain != r.Domain || !reflect.DeepEqual(back.Roles, r.Roles) || back.Principal != r.Principal ||
			back.CompleteRoleSet != r.CompleteRoleSet || back.KeyID != r.KeyID || !back.ExpiryTime.Equal(r.ExpiryTime) {
			t.Fatalf("round trip changed %+v into %+v", r, back)
		}
	})
}

// FuzzVerifyAccessToken feeds arbitrary token strings to the verifier: no panic, and
// success only with a real signature.
func FuzzVerifyAccessToken(f *testing.F) {
	keys := athenz.StaticKeySet{"ec": testP256().Public(), "rsa": testRSA2048().Public()}
	good, err := athenz.SignAccessToken(testClaims(nil), testP256(), "ec")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("...")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := athenz.VerifyAccessToken(tok, keys, athenz.AccessTokenOptions{Now: testNow})
		if err != nil {
			if athenz.TokenErrorReason(err) == "invalid" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if c.Audience == "" || c.ExpiresAt <= c.IssuedAt {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

// FuzzAccessTokenClaims signs arbitrary payloads with the real key, so the fuzzer
// reaches the claims decoder: no panic, and accepted claims re-sign to the same claims.
func FuzzAccessTokenClaims(f *testing.F) {
	keys := athenz.StaticKeySet{"ec": testP256().Public()}
	sign := esSigner(testP256(), crypto.SHA256)
	f.Add(mustJSON(f, testClaims([]byte("c"))))
	f.Add(`{"aud":"d","iat":1700000000,"exp":1700000001,"exp":1}`)
	f.Add(`{"aud":["d"],"iat":1700000000,"exp":1700000001}`)
	f.Add(`{"aud":"d","iat":1700000000,"exp":1700000001,"cnf":{"x5t#S256":1}}`)
	f.Add(`{"aud":"d","iat":1.7e9,"exp":1700000001,"scp":["a b"]}`)
	f.Fuzz(func(t *testing.T, payload string) {
		tok := rawJWS(t, map[string]string{"alg": "ES256", "kid": "ec", "typ": "at+jwt"}, payload, sign)
		opts := athenz.AccessTokenOptions{Now: testNow, Skew: 100 * 365 * 24 * time.Hour}
		c, err := athenz.VerifyAccessToken(tok, keys, opts)
		if err != nil {
			return
		}
		if !json.Valid([]byte(payload)) {
			t.Fatalf("accepted invalid JSON %q", payload)
		}
		again, err := athenz.SignAccessToken(c, testP256(), "ec")
		if err != nil {
			t.Fatalf("cannot re-sign accepted claims %+v: %v", c, err)
		}
		back, err := athenz.VerifyAccessToken(again, keys, opts)
		if err != nil || mustJSON(t, back) != mustJSON(t, c) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, back, c)
		}
	})
}

// FuzzParseJWKS: no panic, and every key accepted is usable and survives JWKFromPublicKey.
func FuzzParseJWKS(f *testing.F) {
	var set athenz.JWKS
	for i, k := range joseKeys {
		j, err := athenz.JWKFromPublicKey(k.key.Public(), k.name, i%2 == 0)
		if err != nil {
			f.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	f.Add([]byte(mustJSON(f, set)))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := athenz.ParseJWKS(b)
		if err != nil {
			return
		}
		for kid, pub := range keys {
			if err := athenz.CheckPublicKey(pub); err != nil {
				t.Fatalf("key %q: %v", kid, err)
			}
			j, err := athenz.JWKFromPublicKey(pub, kid, true)
			if err != nil {
				t.Fatalf("key %q: %v", kid, err)
			}
			back, err := j.PublicKey()
			if err != nil || !equalKey(back, pub) {
				t.Fatalf("key %q does not round trip: %v", kid, err)
			}
		}
	})
}
