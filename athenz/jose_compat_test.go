package athenz_test

// Access tokens and JWKS against the code real Athenz consumers run: go-jose exactly as
// zts-accesstoken -validate and SIA call it, SIA's token helpers, the ZTS Go client's JWK
// types (with their validation) and zpe-updater's JWK loading. Test-only imports.

import (
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/AthenZ/athenz/clients/go/zts"
	"github.com/AthenZ/athenz/libs/go/sia/access/tokens"
	zpu "github.com/AthenZ/athenz/utils/zpe-updater"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// athenzAlgorithms is the allow-list zts-accesstoken, athenzutils and SIA pass to
// jwt.ParseSigned.
var athenzAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

var joseKeys = []struct {
	name string
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
}{
	{"p256", testP256(), jose.ES256},
	{"p384", testP384(), jose.ES384},
	{"rsa", testRSA2048(), jose.RS256},
}

// TestAccessTokenVerifiesWithGoJose runs zts-accesstoken's validation steps on our
// tokens: parse with its algorithm list, pick the key by the header kid, check the
// signature and decode the claims into a map, then SIA's expiry helpers.
func TestAccessTokenVerifiesWithGoJose(t *testing.T) {
	cert := []byte("client cert")
	for _, tc := range joseKeys {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := athenz.SignAccessToken(testClaims(cert), tc.key, "zts.0")
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.ParseSigned(ours, athenzAlgorithms)
			if err != nil {
				t.Fatalf("go-jose cannot parse our token: %v", err)
			}
			h := tok.Headers[0]
			if h.KeyID != "zts.0" || h.Algorithm != string(tc.alg) || h.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("header as go-jose reads it: %+v", h)
			}
			jwks := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: tc.key.Public(), Algorithm: h.Algorithm, KeyID: h.KeyID}}}
			var claims map[string]any
			if err := tok.Claims(jwks, &claims); err != nil {
				t.Fatalf("go-jose rejects our signature: %v", err)
			}
			if claims["aud"] != "sports" || claims["exp"] != float64(testNow.Unix()+3600) ||
				claims["cnf"].(map[string]any)["x5t#S256"] != athenz.CertThumbprint(cert) {
				t.Errorf("claims as go-jose reads them: %v", claims)
			}
			if scp, ok := claims["scp"].([]any); !ok || len(scp) != 2 || scp[0] != "readers" {
				t.Errorf("scp = %#v, want an array of short role names", claims["scp"])
			}
			var std jwt.Claims // aud must decode for libraries with typed claims too
			if err := tok.Claims(tc.key.Public(), &std); err != nil || !std.Audience.Contains("sports") {
				t.Errorf("typed claims: %v, %v", std.Audience, err)
			}
			sia, err := tokens.GetClaimsFromAccessTokenUnverified(zts.AccessTokenResponse{Access_token: ours})
			if err != nil {
				t.Fatal(err)
			}
			lifetime, remaining, err := tokens.CheckExpiry(sia, testNow)
			if err != nil || lifetime != 60 || remaining != 60 {
				t.Errorf("SIA CheckExpiry = %v, %v, %v; want 60 minutes of 60", lifetime, remaining, err)
			}
		})
	}
}

// TestGoJoseTokensVerifyWithOurs signs tokens with go-jose and verifies them here, and
// checks that a go-jose HS256 token keyed with the public key's bytes is refused.
func TestGoJoseTokensVerifyWithOurs(t *testing.T) {
	for _, tc := range joseKeys {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: tc.alg, Key: tc.key},
				(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "zts.0"))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(signer).Claims(testClaims(nil)).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			keys := athenz.StaticKeySet{"zts.0": tc.key.Public()}
			got, err := athenz.VerifyAccessToken(tok, keys, athenz.AccessTokenOptions{Issuer: testIssuer, Now: testNow})
			if err != nil {
				t.Fatalf("we reject a go-jose token: %v", err)
			}
			if got.Audience != "sports" || len(got.Scopes) != 2 {
				t.Errorf("claims: %+v", got)
			}
		})
	}
	pem := publicPEM(t, testP256().Public())
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(pem)},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "zts.0"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(hs).Claims(testClaims(nil)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	_, err = athenz.VerifyAccessToken(tok, athenz.StaticKeySet{"zts.0": testP256().Public()}, athenz.AccessTokenOptions{Now: testNow})
	if !errors.Is(err, athenz.ErrUnsupportedAlgorithm) {
		t.Errorf("HS256 keyed with the public key PEM: %v, want ErrUnsupportedAlgorithm", err)
	}
}

// TestJWKSInteroperatesWithGoJose decodes our JWKS with go-jose (as zpe-updater and
// athenz-authorizer's libraries do) and go-jose's JWKS with ParseJWKS.
func TestJWKSInteroperatesWithGoJose(t *testing.T) {
	var ours athenz.JWKS
	var theirs jose.JSONWebKeySet
	for _, tc := range joseKeys {
		k, err := athenz.JWKFromPublicKey(tc.key.Public(), tc.name, true)
		if err != nil {
			t.Fatal(err)
		}
		ours.Keys = append(ours.Keys, k)
		theirs.Keys = append(theirs.Keys, jose.JSONWebKey{Key: tc.key.Public(), KeyID: tc.name, Algorithm: string(tc.alg), Use: "sig"})
	}
	b, err := json.Marshal(ours)
	if err != nil {
		t.Fatal(err)
	}
	var decoded jose.JSONWebKeySet
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatalf("go-jose cannot read our JWKS: %v", err)
	}
	for _, tc := range joseKeys {
		got := decoded.Key(tc.name)
		if len(got) != 1 || !equalKey(got[0].Key, tc.key.Public()) || got[0].Algorithm != string(tc.alg) || got[0].Use != "sig" {
			t.Errorf("%s: go-jose decoded %+v", tc.name, got)
		}
	}
	b, err = json.Marshal(theirs)
	if err != nil {
		t.Fatal(err)
	}
	set, err := athenz.ParseJWKS(b)
	if err != nil {
		t.Fatalf("we cannot read go-jose's JWKS: %v", err)
	}
	for _, tc := range joseKeys {
		if k, ok := set.Key(tc.name); !ok || !equalKey(k, tc.key.Public()) {
			t.Errorf("%s: key differs after go-jose encoding", tc.name)
		}
	}
	openssl, _ := athenz.JWKFromPublicKey(testP256().Public(), "k", false)
	b, _ = json.Marshal(openssl)
	var k jose.JSONWebKey
	if err := json.Unmarshal(b, &k); err == nil {
		t.Error("go-jose now accepts prime256v1; the rfc switch may no longer matter")
	}
}

// TestJWKSReadByAthenzClients decodes our JWKS with the ZTS Go client's JWKList (which
// validates required fields) and loads it the way zpe-updater loads the AthenzJWKConfig
// SIA writes to <siaDir>/athenz.conf, comparing the PEM keys it ends up with.
func TestJWKSReadByAthenzClients(t *testing.T) {
	var rfc, openssl athenz.JWKS
	for _, tc := range joseKeys {
		k, _ := athenz.JWKFromPublicKey(tc.key.Public(), tc.name, true)
		rfc.Keys = append(rfc.Keys, k)
		k, _ = athenz.JWKFromPublicKey(tc.key.Public(), tc.name, false)
		openssl.Keys = append(openssl.Keys, k)
	}
	for _, set := range []athenz.JWKS{rfc, openssl, {}} {
		var list zts.JWKList
		if err := json.Unmarshal([]byte(mustJSON(t, set)), &list); err != nil || len(list.Keys) != len(set.Keys) {
			t.Fatalf("zts.JWKList refuses our JWKS: %v", err)
		}
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	athenzConf := write("athenz.conf", `{"zmsUrl":"https://zms:4443/","ztsUrl":"https://zts:4443/"}`)
	zpuConf := write("zpu.conf", `{"domains":"sports"}`)
	for _, tc := range []struct {
		name string
		set  athenz.JWKS
		// loaded names the keys zpe-updater ends up with.
		loaded []string
	}{
		{"rfc names", rfc, []string{"p256", "p384", "rsa"}},
		{"openssl names", openssl, []string{"rsa"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			siaDir := filepath.Join(dir, tc.name)
			write(filepath.Join(tc.name, "athenz.conf"), mustJSON(t, map[string]any{"zts": tc.set, "zms": athenz.JWKS{}, "modified": "2024-01-02T03:04:05.000Z"}))
			config, err := zpu.NewZpuConfiguration(dir, athenzConf, zpuConf, siaDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(config.ZtsKeysmap) != len(tc.loaded) {
				t.Errorf("zpe-updater loaded %d keys, want %v", len(config.ZtsKeysmap), tc.loaded)
			}
			for _, kc := range joseKeys {
				got := config.GetZtsPublicKey(kc.name)
				if want := strings.Contains(strings.Join(tc.loaded, " "), kc.name); want != (got != "") {
					t.Errorf("key %s loaded: %v, want %v", kc.name, got != "", want)
				} else if want && got != publicPEM(t, kc.key.Public()) {
					t.Errorf("key %s: zpe-updater PEM differs from ours", kc.name)
				}
			}
		})
	}
}
