package k8s_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const (
	testIssuer  = "https://kubernetes.default.svc.cluster.local"
	testPodUID  = "6f1c3a52-0d8e-4b43-9f0a-2c1e5d7b8a90"
	testSAUID   = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	testPodName = "api-7d9f8b6c5-x2x4q"
)

type clusterKeys struct {
	rsa, ec, rogue crypto.Signer
}

var keys = sync.OnceValue(func() clusterKeys {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	gen := func() crypto.Signer {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	return clusterKeys{rsa: rk, ec: gen(), rogue: gen()}
})

// jwksJSON is the JWKS document of the given keys, as kube-apiserver serves it.
func jwksJSON(t testing.TB, ks map[string]crypto.Signer) []byte {
	t.Helper()
	var set athenz.JWKS
	for kid, k := range ks {
		j, err := athenz.JWKFromPublicKey(k.Public(), kid, true)
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// saClaims are the claims kube-apiserver puts in a pod-bound projected token.
func saClaims() map[string]any {
	return map[string]any{
		"aud": []string{"athenz-mesh"},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"iss": testIssuer,
		"jti": "3c8e1d2a-9b7f-4e6d-a5c4-b3a2918f7e6d",
		"kubernetes.io": map[string]any{
			"namespace":      "sports",
			"node":           map[string]any{"name": "node-1", "uid": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},
			"pod":            map[string]any{"name": testPodName, "uid": testPodUID},
			"serviceaccount": map[string]any{"name": "api", "uid": testSAUID},
			"warnafter":      now.Add(50 * time.Minute).Unix(),
		},
		"sub": "system:serviceaccount:sports:api",
	}
}

// saToken signs claims (saClaims edited by edit) with signer under kid, with the header
// kube-apiserver writes (alg and kid, no typ).
func saToken(t testing.TB, signer crypto.Signer, kid string, edit func(c map[string]any)) string {
	t.Helper()
	c := saClaims()
	if edit != nil {
		edit(c)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := athenz.SignJWS(signer, athenz.JWSHeader{Kid: kid}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func kio(c map[string]any) map[string]any { return c["kubernetes.io"].(map[string]any) }

// testMapping maps namespace sports (every service account, by name) to domain sports,
// payments/api to finance.payments.gateway, and nothing else.
func testMapping() k8s.Mapping {
	return k8s.Mapping{Entries: []k8s.MappingEntry{
		{Namespace: "sports", ServiceAccount: "*", Domain: "sports"},
		{Namespace: "payments", ServiceAccount: "api", Domain: "finance.payments", Service: "gateway"},
	}}
}

// jwksServer serves a JWKS document that tests may swap, counting the fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{doc: doc, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			http.Error(w, "unavailable", s.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.status = doc, status
}

func request(token string) *attestor.Request {
	return &attestor.Request{Provider: "athenz-mesh.k8s", Domain: "sports", Service: "api", InstanceID: testPodUID,
		AttestationData: token, Now: now}
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
