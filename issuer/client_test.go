package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

func TestClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	newClient := func(cert *tlsCertificate, ntok func() (string, error)) *issuer.Client {
		c, err := issuer.NewClient(issuer.ClientConfig{BaseURL: e.base, HTTPClient: e.client(cert), NToken: ntok})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	secret, hash, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateJoinToken(ctx, store.JoinToken{IDHash: hash, Domain: "sports", Service: "web", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	key := newP256(t)
	id, err := newClient(nil, nil).RegisterInstance(ctx, &issuer.InstanceRegisterInformation{
		Provider: joinProvider, Domain: "sports", Service: "web", AttestationData: secret,
		CSR: serviceCSR(t, key, "sports", "web", joinProvider, "node-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	inst := newClient(tlsCert(t, id.X509Certificate, key), nil)
	id2, err := inst.RefreshInstance(ctx, joinProvider, "sports", "web", "node-1",
		&issuer.InstanceRefreshInformation{CSR: serviceCSR(t, key, "sports", "web", joinProvider, "node-1")})
	if err != nil || id2.X509Certificate == "" {
		t.Fatalf("refresh: %v", err)
	}
	// The refreshed certificate asks for a role certificate and an access token.
	inst = newClient(tlsCert(t, id2.X509Certificate, key), nil)
	if _, err := inst.GetRoleCertificate(ctx, &issuer.RoleCertificateRequest{CSR: makeCSR(t, csrSpec{key: key, cn: "sports:role.readers", uris: []string{"athenz://principal/sports.web"}})}); !issuer.IsStatus(err, 403) {
		t.Fatalf("role certificate of a non-member: %v", err)
	}
	if _, err := inst.GetAccessToken(ctx, "sports:domain", 0); !issuer.IsStatus(err, 403) {
		t.Fatalf("access token of a non-member: %v", err)
	}
	api := newClient(nil, func() (string, error) {
		return ntoken(t, "sports.api", serviceKey("sports.api"), "0", time.Now(), time.Minute), nil
	})
	at, err := api.GetAccessToken(ctx, "sports:role.readers", 5*time.Minute)
	if err != nil || at.ExpiresIn != 300 {
		t.Fatalf("access token: %+v %v", at, err)
	}
	if _, err := athenz.VerifyAccessToken(at.AccessToken, e.jwks(t), athenz.AccessTokenOptions{Audiences: []string{"sports"}}); err != nil {
		t.Fatal(err)
	}
	var apiErr *issuer.Error
	if _, err := api.GetAccessToken(ctx, "nosuch:domain", 0); !issuer.IsStatus(err, 404) {
		t.Fatalf("unknown domain: %v", err)
	} else if !asError(err, &apiErr) || apiErr.Message == "" {
		t.Fatalf("error %#v", err)
	}
	if _, err := issuer.NewClient(issuer.ClientConfig{BaseURL: "zts"}); err == nil {
		t.Fatal("a relative base URL was accepted")
	}
}
