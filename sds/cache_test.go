package sds

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

func newCA(t testing.TB) *sdstest.CA {
	t.Helper()
	ca, err := sdstest.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *sdstest.CA, principal string) *sdstest.Leaf {
	t.Helper()
	l, err := ca.Issue(principal, spiffeOf(principal), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCacheSetIdentity(t *testing.T) {
	ca := newCA(t)
	c := NewCache()
	l := issue(t, ca, idAPI)
	other := issue(t, ca, idAPI)

	for _, tc := range []struct {
		name  string
		id    string
		cred  *Credential
		isErr error
	}{
		{"nil", idAPI, nil, ErrInvalidCredential},
		{"no key", idAPI, &Credential{Chain: l.Chain}, ErrInvalidCredential},
		{"key of another certificate", idAPI, &Credential{Chain: l.Chain, Key: other.Key}, ErrInvalidCredential},
		{"certificate names someone else", idWeb, &Credential{Chain: l.Chain, Key: l.Key}, ErrInvalidCredential},
		{"not a principal", "sports", &Credential{Chain: l.Chain, Key: l.Key}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.SetIdentity(tc.id, tc.cred)
			if err == nil || (tc.isErr != nil && !errors.Is(err, tc.isErr)) {
				t.Fatalf("got %v, want %v", err, tc.isErr)
			}
		})
	}
	if _, ok := c.Identity(idAPI); ok {
		t.Fatal("refused credential stored")
	}

	// The root at the end of a chain (Istio's CA returns it) is dropped.
	if err := c.SetIdentity(idAPI, &Credential{Chain: []*x509.Certificate{l.Cert, ca.Cert}, Key: l.Key}); err != nil {
		t.Fatal(err)
	}
	e, ok := c.Identity(idAPI)
	if !ok || len(e.Chain) != 1 || e.SpiffeID != spiffeOf(idAPI) || !e.NotAfter.Equal(l.Cert.NotAfter) {
		t.Fatalf("entry %+v", e)
	}
	if !bytes.Equal(e.ChainDER, l.Cert.Raw) || e.Identity != idAPI || e.Version == 0 {
		t.Fatal("encodings wrong")
	}
	if k, err := x509.ParsePKCS8PrivateKey(e.KeyDER); err != nil || !k.(*ecdsa.PrivateKey).Equal(l.Key) {
		t.Fatal("key encoding wrong")
	}

	// Same content again: no new version, no signal.
	w := c.Watch()
	defer w.Close()
	w.Follow([]string{idAPI}, false)
	v := c.Version()
	if err := c.SetIdentity(idAPI, &Credential{Chain: l.Chain, Key: l.Key}); err != nil {
		t.Fatal(err)
	}
	if c.Version() != v {
		t.Fatal("same content bumped the version")
	}
	select {
	case <-w.C():
		t.Fatal("same content signalled")
	default:
	}
	if err := c.SetIdentity(idAPI, &Credential{Chain: other.Chain, Key: other.Key}); err != nil {
		t.Fatal(err)
	}
	e2, _ := c.Identity(idAPI)
	if e2.Version <= e.Version || e2.Digest == e.Digest {
		t.Fatal("rotation kept version or digest")
	}
	<-w.C()
}

func TestCacheUnexportableKey(t *testing.T) {
	ca := newCA(t)
	l := issue(t, ca, idAPI)
	err := NewCache().SetIdentity(idAPI, &Credential{Chain: l.Chain, Key: opaqueSigner{l.Key}})
	if !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("opaque signer: %v", err)
	}
}

// opaqueSigner hides the key type, as an HSM-backed signer would.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

func TestCacheRoleCertsAndRemoval(t *testing.T) {
	ca := newCA(t)
	c := NewCache()
	l := issue(t, ca, idAPI)
	if err := c.SetIdentity(idAPI, &Credential{Chain: l.Chain, Key: l.Key}); err != nil {
		t.Fatal(err)
	}
	rl, err := ca.IssueRole(idAPI, "sports", "readers", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetRoleCert(idAPI, "sports", "Bad Role", &Credential{Chain: rl.Chain, Key: rl.Key}); err == nil {
		t.Fatal("bad role name accepted")
	}
	w := c.Watch()
	defer w.Close()
	w.Follow([]string{idAPI}, false)
	if err := c.SetRoleCert(idAPI, "sports", "readers", &Credential{Chain: rl.Chain, Key: rl.Key}); err != nil {
		t.Fatal(err)
	}
	<-w.C()
	if e, ok := c.RoleCert(idAPI, "sports", "readers"); !ok || e.Role != "readers" || e.RoleDomain != "sports" {
		t.Fatal("role certificate not stored")
	}
	c.RemoveRoleCert(idAPI, "sports", "readers")
	<-w.C()
	if _, ok := c.RoleCert(idAPI, "sports", "readers"); ok {
		t.Fatal("role certificate not removed")
	}
	c.SetRoleCert(idAPI, "sports", "readers", &Credential{Chain: rl.Chain, Key: rl.Key})
	<-w.C()
	c.RemoveIdentity(idAPI)
	<-w.C()
	if _, ok := c.Identity(idAPI); ok {
		t.Fatal("identity not removed")
	}
	if _, ok := c.RoleCert(idAPI, "sports", "readers"); ok {
		t.Fatal("role certificate outlived its identity")
	}
	if got := c.Identities(); len(got) != 0 {
		t.Fatalf("identities %v", got)
	}
}

func TestCacheBundle(t *testing.T) {
	ca, ca2 := newCA(t), newCA(t)
	c := NewCache()
	for _, bad := range []*Bundle{nil, {}, {Roots: []*x509.Certificate{ca.Cert}, TrustDomains: []string{"Not A TD"}}} {
		if err := c.SetBundle(bad); err == nil {
			t.Fatalf("bundle %+v accepted", bad)
		}
	}
	jwtKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	b := &Bundle{
		Roots:          []*x509.Certificate{ca.Cert, ca2.Cert, ca.Cert},
		TrustDomains:   []string{td, td, "sports"},
		JWTAuthorities: map[string]crypto.PublicKey{"k1": jwtKey.Public(), "k2": edPub},
	}
	if err := c.SetBundle(b); err != nil {
		t.Fatal(err)
	}
	e, _ := c.Bundle()
	if len(e.Roots) != 2 || !slices.Equal(e.TrustDomains, []string{td, "sports"}) || e.JWKS == nil {
		t.Fatalf("bundle entry %+v", e)
	}
	if !bytes.Equal(e.RootsDER, append(slices.Clone(ca.Cert.Raw), ca2.Cert.Raw...)) {
		t.Fatal("roots DER")
	}
	// The JWKS (map order) and the digest are stable.
	for range 20 {
		e2, err := newBundleEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if e2.Digest != e.Digest || !bytes.Equal(e2.JWKS, e.JWKS) {
			t.Fatal("bundle encoding not deterministic")
		}
	}
}

// TestWatcherNeverBlocksWriters: a watcher nobody reads must not delay rotations, and
// signals coalesce to one.
func TestWatcherNeverBlocksWriters(t *testing.T) {
	ca := newCA(t)
	c := NewCache()
	stuck := c.Watch()
	defer stuck.Close()
	stuck.Follow([]string{idAPI}, true)
	leaves := make([]*sdstest.Leaf, 50)
	for i := range leaves {
		leaves[i] = issue(t, ca, idAPI)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, l := range leaves {
			if err := c.SetIdentity(idAPI, &Credential{Chain: l.Chain, Key: l.Key}); err != nil {
				t.Error(err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a watcher that is not read blocked SetIdentity")
	}
	<-stuck.C()
	select {
	case <-stuck.C():
		t.Fatal("signals did not coalesce")
	default:
	}
	e, _ := c.Identity(idAPI)
	if e.Chain[0] != leaves[len(leaves)-1].Cert {
		t.Fatal("reader does not see the latest")
	}
}

func TestWatcherFollowAndDemand(t *testing.T) {
	ca := newCA(t)
	c := NewCache()
	w1, w2 := c.Watch(), c.Watch()
	if !w1.Follow([]string{idAPI, idWeb, idAPI}, false) {
		t.Fatal("Follow reported no change")
	}
	<-c.DemandChanged()
	if w1.Follow([]string{idWeb, idAPI}, false) {
		t.Fatal("same set reported as a change")
	}
	w2.Follow([]string{idWeb}, true)
	if got := c.Demand(); !slices.Equal(got, []string{idAPI, idWeb}) {
		t.Fatalf("demand %v", got)
	}
	// A change to api signals w1 only; a bundle change w2 only.
	l := issue(t, ca, idAPI)
	c.SetIdentity(idAPI, &Credential{Chain: l.Chain, Key: l.Key})
	<-w1.C()
	select {
	case <-w2.C():
		t.Fatal("w2 signalled for an identity it does not follow")
	default:
	}
	c.SetBundle(&Bundle{Roots: []*x509.Certificate{ca.Cert}})
	<-w2.C()
	select {
	case <-w1.C():
		t.Fatal("w1 signalled for the bundle")
	default:
	}
	w1.Close()
	w1.Close()
	if got := c.Demand(); !slices.Equal(got, []string{idWeb}) {
		t.Fatalf("demand after close %v", got)
	}
	w2.Close()
	if got := c.Demand(); len(got) != 0 {
		t.Fatalf("demand after all closed %v", got)
	}
	if w1.Follow([]string{idAPI}, true) {
		t.Fatal("closed watcher followed")
	}
}
