package k8s_test

// No real Kubernetes API server can run in this test environment. These tests use an
// httptest server that speaks the TokenReview protocol exactly as kube-apiserver does:
// POST /apis/authentication.k8s.io/v1/tokenreviews with a bearer token, a JSON body
// decoded into the official k8s.io/api/authentication/v1 types, and a 201 Created answer
// encoded from the same types, with the user extras the service-account authenticator
// sets for pod-bound tokens.

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

const reviewerToken = "issuer-service-account-token"

// apiServer answers TokenReviews from a table of tokens.
type apiServer struct {
	*httptest.Server
	t        testing.TB
	mu       sync.Mutex
	statuses map[string]authv1.TokenReviewStatus
	httpCode int           // when set, answer with this status and a Status body
	raw      string        // when set, answer 201 with this body
	received chan struct{} // when set, signalled on each request, which then waits for its context
	reviews  []authv1.TokenReview
}

func newAPIServer(t testing.TB) *apiServer {
	t.Helper()
	s := &apiServer{t: t, statuses: map[string]authv1.TokenReviewStatus{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+reviewerToken {
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, "unsupported media type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var in authv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Kind != "TokenReview" || in.APIVersion != "authentication.k8s.io/v1" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.reviews = append(s.reviews, in)
	code, raw, received := s.httpCode, s.raw, s.received
	status, known := s.statuses[in.Spec.Token]
	s.mu.Unlock()
	if received != nil {
		received <- struct{}{}
		<-r.Context().Done()
		return
	}
	if code != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Message: "tokenreviews.authentication.k8s.io is forbidden", Code: int32(code)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	if raw != "" {
		_, _ = w.Write([]byte(raw))
		return
	}
	if !known {
		status = authv1.TokenReviewStatus{Error: "[invalid bearer token, token lookup failed]"}
	} else if status.Authenticated && status.Audiences == nil {
		// The API server answers with the requested audiences the token is valid for.
		status.Audiences = slices.Clone(in.Spec.Audiences)
	}
	out := in
	out.Spec = authv1.TokenReviewSpec{} // kube-apiserver does not echo the token
	out.Status = status
	_ = json.NewEncoder(w).Encode(&out)
}

// podStatus is what kube-apiserver answers for a valid pod-bound token of ns/sa.
func podStatus(ns, sa string) authv1.TokenReviewStatus {
	return authv1.TokenReviewStatus{
		Authenticated: true,
		User: authv1.UserInfo{
			Username: "system:serviceaccount:" + ns + ":" + sa,
			UID:      testSAUID,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			Extra: map[string]authv1.ExtraValue{
				"authentication.kubernetes.io/pod-name":      {testPodName},
				"authentication.kubernetes.io/pod-uid":       {testPodUID},
				"authentication.kubernetes.io/node-name":     {"node-1"},
				"authentication.kubernetes.io/node-uid":      {"9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},
				"authentication.kubernetes.io/credential-id": {"JTI=3c8e1d2a-9b7f-4e6d-a5c4-b3a2918f7e6d"},
			},
		},
	}
}

func reviewVerifier(t testing.TB, s *apiServer, cfg func(c *k8s.Config)) *k8s.Verifier {
	t.Helper()
	c := k8s.Config{
		Audiences: []string{"athenz-mesh"},
		Mapping:   testMapping(),
		TokenReview: &k8s.TokenReviewConfig{
			Server:     s.URL,
			TokenFile:  writeFile(t, "token", []byte(reviewerToken+"\n")),
			HTTPClient: s.Client(),
		},
	}
	if cfg != nil {
		cfg(&c)
	}
	v, err := k8s.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenReview(t *testing.T) {
	// The tokens only need the shape of a JWS: the API server, not the verifier, judges them.
	tok := func(name string) string { return "eyJhbGciOiJSUzI1NiJ9." + name + ".c2ln" }
	tests := []struct {
		name   string
		setup  func(s *apiServer) string
		edit   func(r *attestor.Request)
		cfg    func(c *k8s.Config)
		reason attestor.Reason
	}{
		{name: "authenticated pod-bound token", setup: func(s *apiServer) string {
			s.statuses[tok("good")] = podStatus("sports", "api")
			return tok("good")
		}},
		{name: "unauthenticated", reason: attestor.ReasonNotAuthenticated, setup: func(s *apiServer) string {
			s.statuses[tok("expired")] = authv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has expired]"}
			return tok("expired")
		}},
		{name: "unknown to the API server", reason: attestor.ReasonNotAuthenticated, setup: func(s *apiServer) string { return tok("unknown") }},
		{name: "valid only for the API server's audience", reason: attestor.ReasonWrongAudience, setup: func(s *apiServer) string {
			st := podStatus("sports", "api")
			st.Audiences = []string{}
			s.statuses[tok("apiserver")] = st
			return tok("apiserver")
		}},
		{name: "valid for another audience", reason: attestor.ReasonWrongAudience, setup: func(s *apiServer) string {
			st := podStatus("sports", "api")
			st.Audiences = []string{"vault"}
			s.statuses[tok("vault")] = st
			return tok("vault")
		}},
		{name: "a user, not a service account", reason: attestor.ReasonNotAuthenticated, setup: func(s *apiServer) string {
			s.statuses[tok("admin")] = authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{Username: "kubernetes-admin"}}
			return tok("admin")
		}},
		{name: "not bound to a pod", reason: attestor.ReasonNotBound, setup: func(s *apiServer) string {
			st := podStatus("sports", "api")
			delete(st.User.Extra, "authentication.kubernetes.io/pod-uid")
			s.statuses[tok("nopod")] = st
			return tok("nopod")
		}},
		{name: "unmapped namespace", reason: attestor.ReasonUnmapped, setup: func(s *apiServer) string {
			s.statuses[tok("kube")] = podStatus("kube-system", "coredns")
			return tok("kube")
		}},
		{name: "another service than requested", reason: attestor.ReasonIdentityMismatch, setup: func(s *apiServer) string {
			s.statuses[tok("web")] = podStatus("sports", "web")
			return tok("web")
		}},
		{name: "another pod than requested", reason: attestor.ReasonIdentityMismatch, setup: func(s *apiServer) string {
			s.statuses[tok("good")] = podStatus("sports", "api")
			return tok("good")
		}, edit: func(r *attestor.Request) { r.InstanceID = "another-pod-uid" }},
		{name: "server error fails closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string {
			s.statuses[tok("good")] = podStatus("sports", "api")
			s.httpCode = http.StatusInternalServerError
			return tok("good")
		}},
		{name: "forbidden (RBAC missing) fails closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string {
			s.statuses[tok("good")] = podStatus("sports", "api")
			s.httpCode = http.StatusForbidden
			return tok("good")
		}},
		{name: "garbage answer fails closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string {
			s.raw = `{"kind":"TokenReview","status":{"authenticated":"yes"}}`
			return tok("good")
		}},
		{name: "answer of another kind fails closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string {
			s.raw = `{"kind":"Status","apiVersion":"v1","status":"Success"}`
			return tok("good")
		}},
		{name: "wrong reviewer credentials fail closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string {
			s.statuses[tok("good")] = podStatus("sports", "api")
			return tok("good")
		}, cfg: func(c *k8s.Config) { c.TokenReview.TokenFile = writeFile(t, "wrong", []byte("stale")) }},
		{name: "missing reviewer token fails closed", reason: attestor.ReasonUnavailable, setup: func(s *apiServer) string { return tok("good") },
			cfg: func(c *k8s.Config) { c.TokenReview.TokenFile = "/nonexistent/token" }},
		{name: "not a JWS is never sent", reason: attestor.ReasonMalformed, setup: func(s *apiServer) string { return "opaque" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newAPIServer(t)
			token := tc.setup(s)
			v := reviewVerifier(t, s, tc.cfg)
			r := request(token)
			if tc.edit != nil {
				tc.edit(r)
			}
			res, err := v.Verify(context.Background(), r)
			if tc.reason != "" {
				if res != nil || attestor.ReasonOf(err) != tc.reason || attestor.MessageOf(err) == "" {
					t.Fatalf("got %+v, %v; want reason %s", res, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Domain != "sports" || res.Service != "api" || res.InstanceID != testPodUID || res.Namespace != "sports" ||
				res.Attributes["token_id"] != "3c8e1d2a-9b7f-4e6d-a5c4-b3a2918f7e6d" || res.Attributes["node_name"] != "node-1" ||
				res.Attributes["service_account_uid"] != testSAUID {
				t.Fatalf("result %+v", res)
			}
			if len(s.reviews) != 1 || s.reviews[0].Spec.Token != token || !slices.Equal(s.reviews[0].Spec.Audiences, []string{"athenz-mesh"}) {
				t.Fatalf("reviews sent: %+v", s.reviews)
			}
		})
	}
}

// TestTokenReviewInCluster: with no server configured the verifier finds the API server
// from KUBERNETES_SERVICE_HOST/PORT and trusts the configured CA file (in a pod, the
// service-account ca.crt).
func TestTokenReviewInCluster(t *testing.T) {
	s := newAPIServer(t)
	s.statuses["eyJhbGciOiJSUzI1NiJ9.a.b"] = podStatus("sports", "api")
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	v, err := k8s.NewVerifier(k8s.Config{
		Audiences: []string{"athenz-mesh"}, Mapping: testMapping(),
		TokenReview: &k8s.TokenReviewConfig{
			CAFile:    writeFile(t, "ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})),
			TokenFile: writeFile(t, "token", []byte(reviewerToken)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), request("eyJhbGciOiJSUzI1NiJ9.a.b")); err != nil {
		t.Fatal(err)
	}
	// Without the CA the TLS handshake fails, and so does the attestation.
	v, err = k8s.NewVerifier(k8s.Config{
		Audiences: []string{"athenz-mesh"}, Mapping: testMapping(),
		TokenReview: &k8s.TokenReviewConfig{Server: s.URL, TokenFile: writeFile(t, "token", []byte(reviewerToken))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), request("eyJhbGciOiJSUzI1NiJ9.a.b")); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("untrusted server: %v", err)
	}
}

// TestTokenReviewCancelled: a hanging API server does not hang the issuer past the
// caller's context.
func TestTokenReviewCancelled(t *testing.T) {
	s := newAPIServer(t)
	s.received = make(chan struct{}, 1)
	v := reviewVerifier(t, s, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, request("eyJhbGciOiJSUzI1NiJ9.a.b"))
		done <- err
	}()
	<-s.received
	cancel()
	if err := <-done; attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("cancelled review: %v", err)
	}
}

// TestTokenReviewClosedServer: an unreachable API server fails closed.
func TestTokenReviewClosedServer(t *testing.T) {
	s := newAPIServer(t)
	v := reviewVerifier(t, s, nil)
	s.Close()
	if _, err := v.Verify(context.Background(), request("eyJhbGciOiJSUzI1NiJ9.a.b")); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("closed server: %v", err)
	}
}
