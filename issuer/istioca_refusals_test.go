package issuer_test

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// fakeTokenReview is a Kubernetes API server answering TokenReview: it authenticates one
// token (sports/api, pod istioPodUID), fails with a 500 for another, refuses the rest,
// and counts the reviews of each token.
type fakeTokenReview struct {
	good, failing string

	mu    sync.Mutex
	calls map[string]int
}

func (f *fakeTokenReview) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var tr authv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls[tr.Spec.Token]++
	f.mu.Unlock()
	switch tr.Spec.Token {
	case f.failing:
		http.Error(w, "etcd unavailable", http.StatusInternalServerError)
		return
	case f.good:
		tr.Status = authv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences, User: authv1.UserInfo{
			Username: "system:serviceaccount:sports:api", UID: "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
			Extra: map[string]authv1.ExtraValue{
				"authentication.kubernetes.io/pod-name": {"api-7d9f8b6c5-x2x4q"},
				"authentication.kubernetes.io/pod-uid":  {istioPodUID},
			},
		}}
	default:
		tr.Status = authv1.TokenReviewStatus{Error: "invalid bearer token"}
	}
	tr.Kind, tr.APIVersion = "TokenReview", "authentication.k8s.io/v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(&tr)
}

func (f *fakeTokenReview) reviews(token string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[token]
}

// TestIstioRefusedTokenCache checks that in token_review mode a refused token repeated
// within the negative cache's lifetime costs one TokenReview, while a good token is
// reviewed at every call and an API server that could not answer is asked again.
func TestIstioRefusedTokenCache(t *testing.T) {
	fake := &fakeTokenReview{calls: map[string]int{}}
	api := httptest.NewTLSServer(fake)
	t.Cleanup(api.Close)
	dir := t.TempDir()
	caFile, tokenFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("issuer-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newIstioEnv(t, func(c *issuer.IstioConfig) {
		c.Clusters = []issuer.IstioClusterConfig{{ID: istioCluster, TokenReview: &issuer.K8sTokenReviewConfig{Server: api.URL, CAFile: caFile, TokenFile: tokenFile}}}
	})
	withJTI := func(jti string) string {
		return e.saToken(t, "sports", "api", func(c map[string]any) { c["jti"] = jti })
	}
	fake.good, fake.failing = e.saToken(t, "sports", "api", nil), withJTI("failing")
	client := e.stubClient(t)
	csr := istioCSR(t, newP256(t), []string{"spiffe://cluster.local/ns/sports/sa/api"})
	for _, tc := range []struct {
		name        string
		token       string
		calls       int
		code        codes.Code
		wantReviews int
	}{
		{"bad token repeated: reviewed once", withJTI("bad-1"), 3, codes.Unauthenticated, 1},
		{"another bad token: its own review", withJTI("bad-2"), 1, codes.Unauthenticated, 1},
		{"good token: reviewed at every call", fake.good, 2, codes.OK, 2},
		{"API server failing: asked again", fake.failing, 2, codes.Unavailable, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.calls {
				_, err := call(t, client, tc.token, istioCluster, csr, 3600)
				if got := status.Code(err); got != tc.code {
					t.Fatalf("call %d: %v, want %v", i, err, tc.code)
				}
			}
			if got := fake.reviews(tc.token); got != tc.wantReviews {
				t.Errorf("%d TokenReview calls, want %d", got, tc.wantReviews)
			}
		})
	}
}
