package sds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// TestNodeIstioRecord checks that, in Istio mode, an identity is served for one service
// account at a time on a node: a pod of another service account mapped to the same
// identity is refused while a pod of the first one still has its token on the node.
func TestNodeIstioRecord(t *testing.T) {
	dir := t.TempDir()
	n := &NodeIdentities{Istio: &NodeIstio{}, TokenPath: filepath.Join(dir, PodUIDPlaceholder)}
	api := Pod{UID: "a", Namespace: "sports", ServiceAccount: "api"}
	web := Pod{UID: "w", Namespace: "sports", ServiceAccount: "web"}
	api2 := Pod{UID: "a2", Namespace: "sports", ServiceAccount: "api"}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name    string
		pod     Pod
		wantErr string
	}{
		{"first pod binds", api, ""},
		{"same service account", api2, ""},
		{"other service account refused while the pod lives", web, "already serves to service account sports/api (pod a)"},
	} {
		err := n.Record(step.pod, "sports.api")
		if (err == nil) != (step.wantErr == "") || (err != nil && !strings.Contains(err.Error(), step.wantErr)) {
			t.Fatalf("%s: error %v, want %q", step.name, err, step.wantErr)
		}
	}
	if err := os.Remove(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if err := n.Record(web, "sports.api"); err != nil {
		t.Fatalf("the first service account's pods are gone, yet: %v", err)
	}
	if got := n.podsOf("sports.api"); strings.Join(got, ",") != "w" {
		t.Errorf("pods %v, want only the new service account's", got)
	}
	if b, ok := n.serviceAccountOf("w"); !ok || b.serviceAccount != "web" {
		t.Errorf("service account of w: %+v %v", b, ok)
	}
}

// TestIstioChain checks how a CreateCertificate answer is read: root last, to the bundle.
func TestIstioChain(t *testing.T) {
	ca, err := sdstest.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://cluster.local/ns/sports/sa/api"
	leaf, err := ca.Issue("sports.api", id, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(raw []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw}) }
	ok := [][]byte{enc(leaf.Cert.Raw), enc(ca.Cert.Raw)}
	for _, tc := range []struct {
		name    string
		pems    [][]byte
		id      string
		key     bool // the leaf's key, else another
		wantErr string
	}{
		{"leaf then root", ok, id, true, ""},
		{"root alone", ok[1:], id, true, "answered 1 certificates"},
		{"not PEM", [][]byte{[]byte("x"), ok[1]}, id, true, "not PEM"},
		{"another key", ok, id, false, "not for the key sent"},
		{"another SPIFFE ID", ok, "spiffe://cluster.local/ns/sports/sa/web", true, "want only spiffe://cluster.local/ns/sports/sa/web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := leaf.Key
			if !tc.key {
				key = other
			}
			chain, root, err := istioChain(tc.pems, key, tc.id)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 1 || !chain[0].Equal(leaf.Cert) || !root.Equal(ca.Cert) {
				t.Errorf("chain %d certificates, root %s", len(chain), root.Subject)
			}
		})
	}
}

// fakeIstioCA answers CreateCertificate as the issuer does: the CN is the Athenz
// principal (sports.api), the SAN the CSR's, the chain leaf then the signing root.
type fakeIstioCA struct {
	clock Clock

	mu    sync.Mutex
	ca    *sdstest.CA
	calls int
	// during, when set, runs while a certificate is being issued.
	during func()
}

func (f *fakeIstioCA) CreateCertificate(_ context.Context, req *IstioCertRequest) ([][]byte, error) {
	f.mu.Lock()
	ca, during := f.ca, f.during
	f.calls++
	f.mu.Unlock()
	if during != nil {
		during()
	}
	now := f.clock.Now()
	leaf, err := testSignCSR(ca, req.CSR, "sports.api", now.Add(-5*time.Minute), now.Add(time.Hour))
	if err != nil {
		return nil, err
	}
	return [][]byte{certPEM(leaf), certPEM(ca.Cert)}, nil
}

func (f *fakeIstioCA) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// istioNode is node mode with Istio identities over a fake Istio CA, with the pods'
// tokens in a temporary directory.
type istioNode struct {
	dir   string
	clock *stepClock
	ca    *fakeIstioCA
	cache *Cache
	node  *NodeIdentities
	m     *Manager
}

func newIstioNode(t *testing.T) *istioNode {
	t.Helper()
	ca, err := sdstest.NewCA("istio root")
	if err != nil {
		t.Fatal(err)
	}
	n := &istioNode{dir: t.TempDir(), clock: newStepClock(time.Now().Truncate(time.Second)), cache: NewCache()}
	n.ca = &fakeIstioCA{clock: n.clock, ca: ca}
	n.node = &NodeIdentities{Demand: n.cache, Template: IdentitySpec{Provider: "athenz-mesh.istio"},
		TokenPath: filepath.Join(n.dir, PodUIDPlaceholder), Istio: &NodeIstio{CA: n.ca}}
	n.m, err = NewManager(ManagerConfig{}, ManagerDeps{Issuer: unusedIssuer{}, Sink: n.cache, Node: n.node, Clock: n.clock,
		Rand: func() float64 { return 0 }, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// arrive writes p's projected token (audience istio-ca) and records p as the node
// authorizer does before granting it identity.
func (n *istioNode) arrive(t *testing.T, p Pod, identity string) {
	t.Helper()
	tok := jwtWithPayload(`{"aud":["istio-ca"],"kubernetes.io":{"namespace":"` + p.Namespace + `","pod":{"name":"p","uid":"` + p.UID +
		`"},"serviceaccount":{"name":"` + p.ServiceAccount + `"}}}`)
	if err := os.WriteFile(n.node.tokenPath(p.UID), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.node.Record(p, identity); err != nil {
		t.Fatalf("record %s: %v", p.UID, err)
	}
}

// run runs the manager until the test ends.
func (n *istioNode) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for {
			select {
			case <-done:
				return
			case <-n.clock.armed:
			}
		}
	})
}

// waitServed returns the first certificate of identity a peer following it is served.
func waitServed(t *testing.T, c *Cache, identity string) *CredentialEntry {
	t.Helper()
	w := c.Watch()
	defer w.Close()
	w.Follow([]string{identity}, false)
	for {
		if e, ok := c.Identity(identity); ok {
			return e
		}
		select {
		case <-w.C():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s was never served", identity)
		}
	}
}

// TestNodeIstioRebind plays the attack of a pod of another service account mapped to
// the same Athenz service arriving after the first one's pod left, within the idle
// grace: the certificate naming the first service account must be withdrawn before the
// new pod is granted the identity, and the new pod served its own. A pod of the same
// service account keeps the certificate.
func TestNodeIstioRebind(t *testing.T) {
	const id = "sports.api"
	p1 := Pod{UID: "p1", Namespace: "ns1", ServiceAccount: "sa1"}
	for _, tc := range []struct {
		name          string
		next          Pod
		wantWithdrawn bool
		wantCalls     int
	}{
		{"another service account after the first pod left", Pod{UID: "p2", Namespace: "ns2", ServiceAccount: "sa2"}, true, 2},
		{"same service account, another pod", Pod{UID: "p2", Namespace: "ns1", ServiceAccount: "sa1"}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newIstioNode(t)
			n.run(t)
			n.arrive(t, p1, id)
			first := waitServed(t, n.cache, id)
			if want := IstioSpiffeID(DefaultIstioTrustDomain, "ns1", "sa1"); first.SpiffeID != want {
				t.Fatalf("P1 served %s, want %s", first.SpiffeID, want)
			}
			// P1 is deleted: its token goes with it (its peer has stopped asking).
			if err := os.Remove(n.node.tokenPath(p1.UID)); err != nil {
				t.Fatal(err)
			}
			n.arrive(t, tc.next, id)
			// What the next pod would be served if granted now: never the first service
			// account's certificate. (The new one may already be there: the renewal loop
			// issues it at once, racing this check.)
			e, ok := n.cache.Identity(id)
			switch {
			case tc.wantWithdrawn && ok && e.Digest == first.Digest:
				t.Fatalf("after Record, %s is served the certificate of %s", tc.next.UID, e.SpiffeID)
			case !tc.wantWithdrawn && (!ok || e.Digest != first.Digest):
				t.Fatalf("the certificate of the same service account was withdrawn or replaced")
			}
			got := waitServed(t, n.cache, id)
			if want := IstioSpiffeID(DefaultIstioTrustDomain, tc.next.Namespace, tc.next.ServiceAccount); got.SpiffeID != want {
				t.Errorf("%s served %s, want %s", tc.next.UID, got.SpiffeID, want)
			}
			if c := n.ca.count(); c != tc.wantCalls {
				t.Errorf("%d CreateCertificate calls, want %d", c, tc.wantCalls)
			}
		})
	}
}

// TestNodeIstioRebindDuringIssuance checks that a certificate issued for a service account
// the identity passed away from while the call was in flight is not served.
func TestNodeIstioRebindDuringIssuance(t *testing.T) {
	const id = "sports.api"
	n := newIstioNode(t)
	p1 := Pod{UID: "p1", Namespace: "ns1", ServiceAccount: "sa1"}
	n.arrive(t, p1, id)
	n.ca.during = func() {
		if err := os.Remove(n.node.tokenPath(p1.UID)); err != nil {
			t.Error(err)
		}
		n.arrive(t, Pod{UID: "p2", Namespace: "ns2", ServiceAccount: "sa2"}, id)
	}
	spec, err := n.node.spec(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.m.obtainIstio(context.Background(), newIdentityState(spec)); !errors.Is(err, errRebound) {
		t.Errorf("issuance finished after the rebinding: %v, want errRebound", err)
	}
	if e, ok := n.cache.Identity(id); ok {
		t.Errorf("served %s after the identity passed to ns2/sa2", e.SpiffeID)
	}
}

// expiredRoot is a self-signed CA certificate that expired before now.
func expiredRoot(t *testing.T, now time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "old root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNodeIstioRootsMerged checks that an Istio CA answer, which names only the root that
// signed it, adds that root to the trust bundle and never removes another: during a
// root rotation the bundle keeps both roots. Only an expired root leaves.
func TestNodeIstioRootsMerged(t *testing.T) {
	const id = "sports.api"
	caA, err := sdstest.NewCA("root A")
	if err != nil {
		t.Fatal(err)
	}
	caB, err := sdstest.NewCA("root B")
	if err != nil {
		t.Fatal(err)
	}
	a, b := caA.Cert, caB.Cert
	old := expiredRoot(t, time.Now())
	for _, tc := range []struct {
		name   string
		before []*x509.Certificate // the bundle before; nil: none yet
		signer *sdstest.CA
		want   []*x509.Certificate
	}{
		{"rotation: answer signed by the new root", []*x509.Certificate{a, b}, caB, []*x509.Certificate{a, b}},
		{"rotation: answer signed by the old root", []*x509.Certificate{a, b}, caA, []*x509.Certificate{a, b}},
		{"answer signed by a root the bundle lacks", []*x509.Certificate{a}, caB, []*x509.Certificate{a, b}},
		{"no bundle yet", nil, caA, []*x509.Certificate{a}},
		{"an expired root leaves", []*x509.Certificate{old, a}, caA, []*x509.Certificate{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newIstioNode(t)
			n.ca.ca = tc.signer
			n.arrive(t, Pod{UID: "p1", Namespace: "sports", ServiceAccount: "api"}, id)
			if tc.before != nil {
				n.m.setRoots(tc.before)
			}
			spec, err := n.node.spec(id)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.m.obtainIstio(context.Background(), newIdentityState(spec)); err != nil {
				t.Fatal(err)
			}
			bundle, ok := n.cache.Bundle()
			if !ok {
				t.Fatal("no trust bundle")
			}
			if !slices.EqualFunc(bundle.Roots, tc.want, (*x509.Certificate).Equal) {
				var got []string
				for _, r := range bundle.Roots {
					got = append(got, r.Subject.CommonName)
				}
				t.Errorf("bundle roots %q, want %d roots", got, len(tc.want))
			}
		})
	}
}
