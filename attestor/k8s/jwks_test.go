package k8s_test

import (
	"context"
	"crypto"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

func urlVerifier(t testing.TB, srv *httptest.Server, url string) *k8s.Verifier {
	t.Helper()
	v, err := k8s.NewVerifier(k8s.Config{
		Audiences: []string{"athenz-mesh"},
		Mapping:   testMapping(),
		Offline: &k8s.OfflineConfig{Issuer: testIssuer, URL: url, HTTPClient: srv.Client(),
			MinRefreshInterval: time.Minute, MaxAge: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestKeyRotation: a token signed with a key the cache does not know triggers one fetch,
// at most one per MinRefreshInterval; a rotated-in key is picked up after that.
func TestKeyRotation(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa}))
	v := urlVerifier(t, srv.Server, srv.URL+"/openid/v1/jwks")
	verify := func(tok string, at time.Time) attestor.Reason {
		r := request(tok)
		r.Now = at
		_, err := v.Verify(context.Background(), r)
		return attestor.ReasonOf(err)
	}
	old := saToken(t, k.rsa, "rsa-1", nil)
	rotated := saToken(t, k.ec, "ec-2", nil)
	steps := []struct {
		name        string
		token       string
		at          time.Time
		rotate      bool
		want        attestor.Reason
		wantFetches int32
	}{
		{name: "first use loads the keys", token: old, at: now, wantFetches: 1},
		{name: "known key: no fetch", token: old, at: now.Add(time.Second), wantFetches: 1},
		{name: "unknown key right after a fetch: rate limited", token: rotated, at: now.Add(2 * time.Second), want: attestor.ReasonUnknownKey, wantFetches: 1},
		{name: "cluster rotates; still within the interval", rotate: true, token: rotated, at: now.Add(59 * time.Second), want: attestor.ReasonUnknownKey, wantFetches: 1},
		{name: "after the interval the new key is fetched", token: rotated, at: now.Add(time.Minute), wantFetches: 2},
		{name: "the old key is gone from the new set", token: old, at: now.Add(time.Minute + time.Second), want: attestor.ReasonUnknownKey, wantFetches: 2},
		{name: "and stays refused within the interval", token: old, at: now.Add(time.Minute + 30*time.Second), want: attestor.ReasonUnknownKey, wantFetches: 2},
		{name: "an unknown key after the interval fetches again", token: old, at: now.Add(2*time.Minute + time.Second), want: attestor.ReasonUnknownKey, wantFetches: 3},
	}
	for _, s := range steps {
		if s.rotate {
			srv.set(jwksJSON(t, map[string]crypto.Signer{"ec-2": k.ec}), http.StatusOK)
		}
		if got := verify(s.token, s.at); got != s.want {
			t.Fatalf("%s: reason %q, want %q", s.name, got, s.want)
		}
		if got := srv.fetches.Load(); got != s.wantFetches {
			t.Fatalf("%s: %d fetches, want %d", s.name, got, s.wantFetches)
		}
	}
}

// TestKeysOutage: with no keys ever loaded an outage refuses as unavailable; once loaded,
// stale keys keep serving while the endpoint is down.
func TestKeysOutage(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, nil)
	srv.set(nil, http.StatusServiceUnavailable)
	v := urlVerifier(t, srv.Server, srv.URL+"/jwks")
	tok := saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["exp"] = now.Add(24 * time.Hour).Unix() })
	at := func(d time.Duration) *attestor.Request { r := request(tok); r.Now = now.Add(d); return r }

	if _, err := v.Verify(context.Background(), at(0)); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("never loaded, endpoint down: %v", err)
	}
	if _, err := v.Verify(context.Background(), at(time.Second)); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("never loaded, rate limited: %v", err)
	}
	srv.set(jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa}), http.StatusOK)
	if _, err := v.Verify(context.Background(), at(2*time.Minute)); err != nil {
		t.Fatalf("endpoint back: %v", err)
	}
	srv.set(nil, http.StatusInternalServerError)
	if _, err := v.Verify(context.Background(), at(3*time.Hour)); err != nil {
		t.Fatalf("keys stale, endpoint down: %v", err)
	}
	// A key id the stale set lacks cannot be judged while the endpoint is down: the
	// cluster may have rotated to it. That is an outage, not a bad token.
	unknown := request(saToken(t, k.ec, "ec-9", func(c map[string]any) { c["exp"] = now.Add(24 * time.Hour).Unix() }))
	unknown.Now = now.Add(4 * time.Hour)
	if _, err := v.Verify(context.Background(), unknown); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("unknown key while the endpoint is down: %v", err)
	}
	// A document that is not a key set is an outage too, never an empty trust set.
	srv.set([]byte(`{"keys":[]}`), http.StatusOK)
	if _, err := v.Verify(context.Background(), at(5*time.Hour)); err != nil {
		t.Fatalf("empty key set must not replace good keys: %v", err)
	}
}

// TestConcurrentUnknownKids: a burst of tokens with made-up key ids costs one fetch.
func TestConcurrentUnknownKids(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa}))
	v := urlVerifier(t, srv.Server, srv.URL+"/jwks")
	var wg sync.WaitGroup
	for i := range 32 {
		tok := saToken(t, k.rogue, fmt.Sprintf("made-up-%d", i), nil)
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), request(tok)); attestor.ReasonOf(err) != attestor.ReasonUnknownKey {
				t.Errorf("made-up kid: %v", err)
			}
		})
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// TestDiscovery: with neither file nor URL, the keys come from the issuer's OIDC
// discovery document, fetched with the bearer token, over the configured CA.
func TestDiscovery(t *testing.T) {
	k := keys()
	var issuer string
	var discoveryIssuer string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer issuer-sa-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"response_types_supported":["id_token"],"id_token_signing_alg_values_supported":["RS256"]}`,
			discoveryIssuer, issuer+"/openid/v1/jwks")
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer issuer-sa-token" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa}))
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	issuer = srv.URL
	caFile := writeFile(t, "ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	tokenFile := writeFile(t, "token", []byte("issuer-sa-token\n"))

	for _, tc := range []struct {
		name           string
		documentIssuer string
		want           attestor.Reason
	}{
		{name: "matching issuer", documentIssuer: srv.URL},
		{name: "document names another issuer", documentIssuer: "https://evil.example", want: attestor.ReasonUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			discoveryIssuer = tc.documentIssuer
			v, err := k8s.NewVerifier(k8s.Config{
				Audiences: []string{"athenz-mesh"}, Mapping: testMapping(),
				Offline: &k8s.OfflineConfig{Issuer: issuer, CAFile: caFile, BearerTokenFile: tokenFile},
			})
			if err != nil {
				t.Fatal(err)
			}
			tok := saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["iss"] = issuer })
			if _, err := v.Verify(context.Background(), request(tok)); attestor.ReasonOf(err) != tc.want {
				t.Fatalf("got %v, want reason %q", err, tc.want)
			}
		})
	}
}

// TestFetchSurvivesCallerCancel: the caller that triggered a key fetch cancelling its
// request does not abort the fetch the others depend on.
func TestFetchSurvivesCallerCancel(t *testing.T) {
	k := keys()
	doc := jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa})
	received, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(received)
		<-release
		_, _ = w.Write(doc)
	}))
	defer srv.Close()
	v := urlVerifier(t, srv, srv.URL+"/jwks")
	tok := saToken(t, k.rsa, "rsa-1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, request(tok))
		done <- err
	}()
	<-received
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	// Within the refresh interval, the keys that fetch loaded serve everyone.
	if _, err := v.Verify(context.Background(), request(tok)); err != nil {
		t.Fatalf("second caller: %v", err)
	}
}
