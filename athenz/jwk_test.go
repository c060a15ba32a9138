package athenz_test

import (
	"crypto"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// equalKey reports whether two public keys are the same key.
func equalKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestJWKFromPublicKey(t *testing.T) {
	tests := []struct {
		name         string
		key          crypto.PublicKey
		rfc          bool
		kty, alg     string
		crv          string
		coordinateLn int
	}{
		{"p256 rfc", testP256().Public(), true, "EC", "ES256", "P-256", 32},
		{"p256 openssl", testP256().Public(), false, "EC", "ES256", "prime256v1", 32},
		{"p384 rfc", testP384().Public(), true, "EC", "ES384", "P-384", 48},
		{"p384 openssl", testP384().Public(), false, "EC", "ES384", "secp384r1", 48},
		{"p521 rfc", testP521().Public(), true, "EC", "ES512", "P-521", 66},
		{"p521 openssl", testP521().Public(), false, "EC", "ES512", "secp521r1", 66},
		{"rsa", testRSA2048().Public(), true, "RSA", "RS256", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := athenz.JWKFromPublicKey(tc.key, "zts.0", tc.rfc)
			if err != nil {
				t.Fatal(err)
			}
			if k.Kty != tc.kty || k.Alg != tc.alg || k.Crv != tc.crv || k.Kid != "zts.0" || k.Use != "sig" {
				t.Errorf("got %+v", k)
			}
			if tc.kty == "EC" {
				x, _ := base64.RawURLEncoding.DecodeString(k.X)
				y, _ := base64.RawURLEncoding.DecodeString(k.Y)
				if len(x) != tc.coordinateLn || len(y) != tc.coordinateLn {
					t.Errorf("coordinates of %d and %d bytes, want %d", len(x), len(y), tc.coordinateLn)
				}
			} else if k.E != "AQAB" {
				t.Errorf("e = %q, want AQAB", k.E)
			}
			back, err := k.PublicKey()
			if err != nil || !equalKey(back, tc.key) {
				t.Fatalf("PublicKey() = %v, %v; want the original key", back, err)
			}
		})
	}
	for _, bad := range []crypto.PublicKey{testRSA1024().Public(), testP224().Public(), nil} {
		if _, err := athenz.JWKFromPublicKey(bad, "k", true); err == nil {
			t.Errorf("JWKFromPublicKey(%T) succeeded", bad)
		}
	}
	if _, err := athenz.JWKFromPublicKey(testP256().Public(), "", true); err == nil {
		t.Error("empty kid accepted")
	}
}

// TestJWKFixedLengthCoordinates finds a P-256 key whose x has a leading zero byte, the
// case where a big-integer encoding would send 31 bytes.
func TestJWKFixedLengthCoordinates(t *testing.T) {
	for range 20000 {
		k := mustECDSA(elliptic.P256())
		point, _ := k.PublicKey.Bytes()
		if point[1] != 0 {
			continue
		}
		j, err := athenz.JWKFromPublicKey(k.Public(), "k", true)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := base64.RawURLEncoding.DecodeString(j.X)
		if len(x) != 32 || x[0] != 0 {
			t.Fatalf("x = %x, want 32 bytes with a leading zero", x)
		}
		set, err := athenz.ParseJWKS([]byte(mustJSON(t, athenz.JWKS{Keys: []athenz.JWK{j}})))
		if err != nil || !equalKey(set["k"], k.Public()) {
			t.Fatalf("round trip: %v", err)
		}
		// Java ZTS sends the minimal 31-byte form (go-jose refuses it); we accept it.
		j.X = base64.RawURLEncoding.EncodeToString(x[1:])
		set, err = athenz.ParseJWKS([]byte(mustJSON(t, athenz.JWKS{Keys: []athenz.JWK{j}})))
		if err != nil || !equalKey(set["k"], k.Public()) {
			t.Fatalf("31-byte x: %v", err)
		}
		return
	}
	t.Skip("no key with a leading zero byte found")
}

func TestParseJWKS(t *testing.T) {
	p256, _ := athenz.JWKFromPublicKey(testP256().Public(), "ec", false)
	p384, _ := athenz.JWKFromPublicKey(testP384().Public(), "ec384", true)
	rsaKey, _ := athenz.JWKFromPublicKey(testRSA2048().Public(), "rsa", true)
	weak, _ := athenz.JWKFromPublicKey(testRSA2048().Public(), "weak", true)
	weak.N = base64.RawURLEncoding.EncodeToString(testRSA1024().N.Bytes())
	offCurve := p256 // same x, a y that is not on the curve with it
	offCurve.Y = base64.RawURLEncoding.EncodeToString(append([]byte{1}, make([]byte, 31)...))
	edit := func(k athenz.JWK, f func(*athenz.JWK)) athenz.JWK { f(&k); return k }
	set := func(keys ...any) string { return mustJSON(t, map[string]any{"keys": keys}) }
	tests := []struct {
		name    string
		doc     string
		want    map[string]crypto.PublicKey
		wantErr string
	}{
		{"three keys, openssl curve name", set(p256, p384, rsaKey), map[string]crypto.PublicKey{"ec": testP256().Public(), "ec384": testP384().Public(), "rsa": testRSA2048().Public()}, ""},
		{"empty", `{"keys":[]}`, map[string]crypto.PublicKey{}, ""},
		{"extra members ignored", `{"keys":[],"other":1}`, map[string]crypto.PublicKey{}, ""},
		{"oct and okp skipped", set(map[string]string{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, map[string]string{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"}, p256), map[string]crypto.PublicKey{"ec": testP256().Public()}, ""},
		{"encryption key skipped", set(edit(p256, func(k *athenz.JWK) { k.Use = "enc" })), map[string]crypto.PublicKey{}, ""},
		{"no keys member", `{}`, nil, `no "keys"`},
		{"not json", `keys`, nil, "jwks"},
		{"keys not array", `{"keys":{}}`, nil, `"keys"`},
		{"duplicate member", `{"keys":[],"keys":[]}`, nil, "appears twice"},
		{"duplicate kid", set(p256, edit(p384, func(k *athenz.JWK) { k.Kid = "ec" })), nil, `kid "ec" appears twice`},
		{"no kid", set(edit(p256, func(k *athenz.JWK) { k.Kid = "" })), nil, "no kid"},
		{"unknown curve", set(edit(p256, func(k *athenz.JWK) { k.Crv = "secp256k1" })), nil, "curve"},
		{"curve mismatch", set(edit(p384, func(k *athenz.JWK) { k.Crv = "P-256" })), nil, "at most 32 bytes"},
		{"short x off the curve", set(edit(p256, func(k *athenz.JWK) { k.X = k.X[:40] })), nil, "curve"},
		{"padded x", set(edit(p256, func(k *athenz.JWK) { k.X += "=" })), nil, "at most 32 bytes"},
		{"java signed encoding", set(javaSigned(p256), javaSigned(rsaKey)), map[string]crypto.PublicKey{"ec": testP256().Public(), "rsa": testRSA2048().Public()}, ""},
		{"off curve", set(offCurve), nil, "curve"},
		{"alg ignored, as ZTS labels every EC key ES256", set(edit(p384, func(k *athenz.JWK) { k.Alg = "ES256" })), map[string]crypto.PublicKey{"ec384": testP384().Public()}, ""},
		{"weak rsa", set(weak), nil, "RSA key of 1024 bits"},
		{"even exponent", set(edit(rsaKey, func(k *athenz.JWK) { k.E = "AQAA" })), nil, "exponent"},
		{"exponent 1", set(edit(rsaKey, func(k *athenz.JWK) { k.E = "AQ" })), nil, "exponent"},
		{"huge exponent", set(edit(rsaKey, func(k *athenz.JWK) { k.E = "AQAAAAAB" })), nil, "below 2^32"},
		{"exponent 2^31", set(edit(rsaKey, func(k *athenz.JWK) { k.E = "gAAAAA" })), nil, "exponent"},
		{"kid not a string", `{"keys":[{"kty":"EC","kid":1}]}`, nil, `"kid"`},
		{"oversized", `{"keys":[],"x":"` + strings.Repeat("a", athenz.MaxJWKSLength) + `"}`, nil, "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := athenz.ParseJWKS([]byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for kid, want := range tc.want {
				if k, ok := got.Key(kid); !ok || !equalKey(k, want) {
					t.Errorf("key %q differs", kid)
				}
			}
		})
	}
}

// javaSigned re-encodes a JWK's integers as Java's BigInteger.toByteArray does, which ZTS
// sends without ?rfc=true: a leading zero byte whenever the top bit is set.
func javaSigned(k athenz.JWK) athenz.JWK {
	for _, v := range []*string{&k.X, &k.Y, &k.N} {
		b, _ := base64.RawURLEncoding.DecodeString(*v)
		if len(b) > 0 && b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		*v = base64.RawURLEncoding.EncodeToString(b)
	}
	return k
}

func TestJWKSMarshalsEmptyKeys(t *testing.T) {
	b, err := json.Marshal(athenz.JWKS{})
	if err != nil || string(b) != `{"keys":[]}` {
		t.Fatalf("got %s, %v", b, err)
	}
}
