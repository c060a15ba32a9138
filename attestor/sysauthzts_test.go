package attestor_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/ntoken"
	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
)

type onceMap map[string]bool

func (m onceMap) UseOnce(_ context.Context, kind, id string, _ time.Time) error {
	if m[kind+id] {
		return attestor.ErrAlreadyUsed
	}
	m[kind+id] = true
	return nil
}

type serviceKeys map[string]crypto.PublicKey

func (s serviceKeys) ServicePublicKey(domain, service, keyID string) (crypto.PublicKey, bool) {
	k, ok := s[domain+"."+service+"/"+keyID]
	return k, ok
}

// TestSysAuthZTS wires Athenz's built-in provider as the issuer would: one provider that
// takes register tokens and n-tokens, told apart by their shape.
func TestSysAuthZTS(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	gen := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ztsKey, svcKey := gen(), gen()
	reg, err := ztstoken.NewVerifier(ztstoken.Config{Keys: athenz.StaticKeySet{"zts.0": ztsKey.Public()}, Once: onceMap{}})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := ntoken.NewVerifier(ntoken.Config{Keys: serviceKeys{"sports.api/0": svcKey.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	provider := attestor.ByFormat(reg, nt)

	regToken, err := ztstoken.Mint(&ztstoken.Claims{IssuedAt: now.Unix(), Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1"}, ztsKey, "zts.0")
	if err != nil {
		t.Fatal(err)
	}
	nToken, err := (&athenz.NToken{Domain: "sports", Name: "api", KeyID: "0", IssueTime: now, ExpiryTime: now.Add(10 * time.Minute)}).Sign(svcKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		data        string
		refreshable bool
		reason      attestor.Reason
	}{
		{name: "register token", data: regToken, refreshable: true},
		{name: "n-token", data: nToken, refreshable: false},
		{name: "register token again", data: regToken, reason: attestor.ReasonReplayed},
		{name: "join token", data: "amjt1.AAAA", reason: attestor.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &attestor.Request{Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1",
				AttestationData: tc.data, PublicKey: svcKey.Public(), Now: now}
			res, err := provider.Verify(context.Background(), r)
			if attestor.ReasonOf(err) != tc.reason {
				t.Fatalf("got %v, want reason %q", err, tc.reason)
			}
			if err == nil && (res.Refreshable != tc.refreshable || res.Domain != "sports" || res.Service != "api") {
				t.Fatalf("result %+v", res)
			}
		})
	}
}
