package athenz_test

import (
	"crypto"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// The credential checks on authz's per-request path: access tokens, role tokens and
// certificate identities. Signature verification dominates the token benchmarks; the
// parsing and claim checks around it should stay a small fraction.

func benchmarkVerifyAccessToken(b *testing.B, key crypto.Signer) {
	cert := []byte("client certificate")
	tok, err := athenz.SignAccessToken(testClaims(cert), key, "zts.0")
	if err != nil {
		b.Fatal(err)
	}
	keys := athenz.StaticKeySet{"zts.0": key.Public()}
	opts := athenz.AccessTokenOptions{Issuer: testIssuer, Audiences: []string{"sports"}, Now: testNow, CertDER: cert, RequireBinding: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.VerifyAccessToken(tok, keys, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyAccessTokenES256(b *testing.B) { benchmarkVerifyAccessToken(b, testP256()) }

func BenchmarkVerifyAccessTokenRS256(b *testing.B) { benchmarkVerifyAccessToken(b, testRSA2048()) }

func BenchmarkSignAccessTokenES256(b *testing.B) {
	claims := testClaims([]byte("client certificate"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.SignAccessToken(claims, testP256(), "zts.0"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRoleToken(b *testing.B) {
	tok, err := testRoleToken().Sign(testP256())
	if err != nil {
		b.Fatal(err)
	}
	keys := ztsKeys(testP256().Public())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.VerifyRoleToken(tok, keys, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseNToken(b *testing.B) {
	tok := signNToken(b, testP256(), nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.ParseNToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrincipalFromCertificate(b *testing.B) {
	cert := makeCert(b, certSpec{cn: "sports.prod.api", uris: []string{"spiffe://sports.prod/sa/api", "athenz://instanceid/sys.auth.zts/i-0abc"}, dns: []string{"api.sports-prod.athenz.cloud"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.PrincipalFromCertificate(cert); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSpiffeID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.ParseSpiffeID("spiffe://athenz.io/ns/prod/sa/sports.prod.api"); err != nil {
			b.Fatal(err)
		}
	}
}
