package sds

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (e *testEnv) workloadAddr() workloadapi.ClientOption {
	return workloadapi.WithAddr("unix://" + e.path)
}

func TestWorkloadAPIX509WithGoSpiffeClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	leaf := e.issue(idAPI)
	ctx := streamCtx(t)

	svid, err := workloadapi.FetchX509SVID(ctx, e.workloadAddr())
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != spiffeOf(idAPI) || !svid.Certificates[0].Equal(leaf.Cert) || svid.Hint != idAPI {
		t.Fatalf("svid %s hint %q", svid.ID, svid.Hint)
	}
	if !svid.PrivateKey.Public().(*ecdsa.PublicKey).Equal(leaf.Cert.PublicKey) {
		t.Fatal("key does not match")
	}

	bundles, err := workloadapi.FetchX509Bundles(ctx, e.workloadAddr())
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(td))
	if err != nil || !b.HasX509Authority(e.ca.Cert) {
		t.Fatalf("bundle %v, %v", b, err)
	}

	// X509Source follows rotations pushed on its stream.
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(e.workloadAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	updated := src.Updated()
	rotated := e.issue(idAPI)
	for {
		s, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if s.Certificates[0].Equal(rotated.Cert) {
			break
		}
		select {
		case <-updated:
		case <-ctx.Done():
			t.Fatal("rotation not observed by the X509Source")
		}
	}

	// A CA rotation reaches the source's bundle too.
	ca2 := newCA(t)
	e.setBundle(e.ca.Cert, ca2.Cert)
	for {
		b, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(td))
		if err == nil && b.HasX509Authority(ca2.Cert) && b.HasX509Authority(e.ca.Cert) {
			break
		}
		select {
		case <-updated:
		case <-ctx.Done():
			t.Fatal("bundle rotation not observed")
		}
	}
}

func TestWorkloadAPIRequiresSecurityHeader(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	c := workload.NewSpiffeWorkloadAPIClient(e.dial())
	st, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchX509SVID without header: %v", err)
	}
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ValidateJWTSVID without header: %v", err)
	}
	if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchJWTSVID without header: %v", err)
	}
}

func TestWorkloadAPIPeerNotEntitled(t *testing.T) {
	e := newEnv(t, envOptions{grant: &Grant{Reason: "uid 4242 not allowed"}})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	if _, err := workloadapi.FetchX509SVID(ctx, e.workloadAddr()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
	// The bundle is public.
	if _, err := workloadapi.FetchX509Bundles(ctx, e.workloadAddr()); err != nil {
		t.Fatal(err)
	}
}

func TestWorkloadAPIJWTWithoutSigner(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	_, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc"}, e.workloadAddr())
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("FetchJWTSVID: %v, want Unimplemented", err)
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx, "x.y.z", "svc", e.workloadAddr()); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ValidateJWTSVID: %v, want Unimplemented", err)
	}
	if _, err := workloadapi.FetchJWTBundles(ctx, e.workloadAddr()); status.Code(err) != codes.Unimplemented {
		t.Fatalf("FetchJWTBundles: %v, want Unimplemented", err)
	}
}

// testSigner signs JWT-SVIDs with an ES256 key, as the issuer will.
type testSigner struct {
	key *ecdsa.PrivateKey
	kid string
}

func (s testSigner) SignJWTSVID(_ context.Context, spiffeID string, audience []string) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(jwt.Claims{
		Subject: spiffeID, Audience: audience,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
}

func TestWorkloadAPIJWT(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := testSigner{key: key, kid: "k1"}
	e := newEnv(t, envOptions{signer: signer})
	if err := e.cache.SetBundle(&Bundle{
		Roots: []*x509.Certificate{e.ca.Cert}, TrustDomains: []string{td},
		JWTAuthorities: map[string]crypto.PublicKey{"k1": key.Public()},
	}); err != nil {
		t.Fatal(err)
	}
	e.issue(idAPI)
	ctx := streamCtx(t)

	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc", Subject: spiffeid.RequireFromString(spiffeOf(idAPI))}, e.workloadAddr())
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != spiffeOf(idAPI) {
		t.Fatalf("JWT-SVID for %s", svid.ID)
	}
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc", Subject: spiffeid.RequireFromString("spiffe://" + td + "/ns/default/sa/sports.web")}, e.workloadAddr()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("someone else's JWT-SVID: %v", err)
	}

	got, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "svc", e.workloadAddr())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID.String() != spiffeOf(idAPI) {
		t.Fatalf("validated %s", got.ID)
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "other-audience", e.workloadAddr()); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong audience: %v", err)
	}
	// A token signed by a key that is not in the bundle.
	rogueKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rogue, _ := testSigner{key: rogueKey, kid: "k1"}.SignJWTSVID(ctx, spiffeOf(idAPI), []string{"svc"})
	if _, err := workloadapi.ValidateJWTSVID(ctx, rogue, "svc", e.workloadAddr()); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rogue token: %v", err)
	}

	set, err := workloadapi.FetchJWTBundles(ctx, e.workloadAddr())
	if err != nil {
		t.Fatal(err)
	}
	jb, err := set.GetJWTBundleForTrustDomain(spiffeid.RequireTrustDomainFromString(td))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := jb.FindJWTAuthority("k1"); !ok || !k.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatal("JWT bundle lacks the signing key")
	}
}
