package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// jwClock is a settable clock.
type jwClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *jwClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *jwClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// jwksDoc returns a JWKS document with the given kid → key pairs (RFC curve names).
func jwksDoc(tb testing.TB, keys map[string]crypto.PublicKey) []byte {
	tb.Helper()
	var set athenz.JWKS
	for _, kid := range sortedKeys(keys) {
		k, err := athenz.JWKFromPublicKey(keys[kid], kid, true)
		if err != nil {
			tb.Fatal(err)
		}
		set.Keys = append(set.Keys, k)
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// jwksServer serves a JWKS document with an ETag, answering If-None-Match with 304. It
// counts requests and can be made to fail or to block.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	status   int
	requests atomic.Int32
	seen     chan int // receives each answered status, when set
	hold     chan struct{}
	entered  chan struct{}
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body, status, hold, entered, seen := s.body, s.status, s.hold, s.entered, s.seen
		s.mu.Unlock()
		if entered != nil {
			entered <- struct{}{}
		}
		if hold != nil {
			<-hold
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		switch {
		case status != http.StatusOK:
			w.WriteHeader(status)
		case r.Header.Get("If-None-Match") == etag:
			status = http.StatusNotModified
			w.WriteHeader(status)
		default:
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
		if seen != nil {
			seen <- status
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(body []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status = body, status
}

func newTestJWKS(t *testing.T, opts JWKSOptions) *JWKS {
	t.Helper()
	j, err := NewJWKS(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.bg.Wait)
	return j
}

func hasKey(j *JWKS, kid string) bool {
	_, ok := j.Key(kid)
	return ok
}

func TestJWKSFile(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	path := filepath.Join(t.TempDir(), "jwks.json")
	mtime := credNow
	write := func(t *testing.T, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Second)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	j := newTestJWKS(t, JWKSOptions{File: path, Now: clock.Now})
	if !hasKey(j, "ec-1") || hasKey(j, "ec-2") {
		t.Fatalf("keys = %v, want [ec-1]", j.Status().KeyIDs)
	}

	// Rotation: a new kid is read on first use, at most once per MinRefetch.
	write(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public(), "ec-2": f.other.Public()}))
	if hasKey(j, "ec-2") {
		t.Fatal("ec-2 found within MinRefetch of the last read")
	}
	clock.advance(DefaultJWKSFileMinRefetch)
	if !hasKey(j, "ec-2") {
		t.Fatalf("ec-2 not found after the refetch; status %+v", j.Status())
	}

	// An unchanged file is not parsed again.
	loaded := j.Status().LoadedAt
	clock.advance(time.Minute)
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := j.Status(); !st.LoadedAt.Equal(loaded) || !st.LastSuccess.Equal(clock.Now()) {
		t.Fatalf("unchanged file: status %+v, want LoadedAt %v and LastSuccess now", st, loaded)
	}

	// Bad documents keep the last good set, whether read by a due lookup or on demand.
	for _, bad := range []struct {
		name string
		body []byte
	}{
		{"garbage", []byte("{not json")},
		{"no usable key", []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`)},
		{"empty", []byte(`{"keys":[]}`)},
		{"malformed key", []byte(`{"keys":[{"kty":"EC","kid":"ec-3","crv":"P-256","x":"AA","y":"AA"}]}`)},
		{"oversized", []byte(`{"keys":[],"pad":"` + strings.Repeat("a", athenz.MaxJWKSLength) + `"}`)},
	} {
		t.Run(bad.name, func(t *testing.T) {
			write(t, bad.body)
			clock.advance(DefaultJWKSFileInterval)
			hasKey(j, "ec-1") // due: starts a background read
			j.bg.Wait()
			st := j.Status()
			if st.LastError == "" || !slices.Equal(st.KeyIDs, []string{"ec-1", "ec-2"}) {
				t.Fatalf("status %+v, want an error and the last good keys", st)
			}
			if !hasKey(j, "ec-2") {
				t.Fatal("last good key lost")
			}
		})
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := j.Refresh(context.Background()); err == nil || !hasKey(j, "ec-1") {
		t.Fatalf("removed file: Refresh = %v, ec-1 kept = %v", err, hasKey(j, "ec-1"))
	}
}

func TestJWKSURLRotationAndRateLimit(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	srv := newJWKSServer(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	j := newTestJWKS(t, JWKSOptions{URL: srv.URL + "/zts/v1/oauth2/keys?rfc=true", Client: srv.Client(), Now: clock.Now})
	requests := func() int32 { return srv.requests.Load() }
	if requests() != 1 || !hasKey(j, "ec-1") || requests() != 1 {
		t.Fatalf("after start: %d requests, keys %v", requests(), j.Status().KeyIDs)
	}

	srv.serve(jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public(), "ec-2": f.other.Public()}), http.StatusOK)
	if hasKey(j, "ec-2") || requests() != 1 {
		t.Fatalf("unknown kid within MinRefetch: found or fetched (%d requests)", requests())
	}
	clock.advance(DefaultJWKSMinRefetch)
	if !hasKey(j, "ec-2") || requests() != 2 {
		t.Fatalf("unknown kid after MinRefetch: keys %v, %d requests", j.Status().KeyIDs, requests())
	}
	// Random kids cannot make the issuer serve more than one fetch per MinRefetch.
	for i := range 100 {
		clock.advance(time.Second / 10)
		if hasKey(j, "nope-"+string(rune('a'+i%26))) {
			t.Fatal("unknown kid found")
		}
	}
	if requests() != 2 {
		t.Fatalf("%d requests after 100 unknown kids in 10s, want 2", requests())
	}
	clock.advance(DefaultJWKSMinRefetch)
	hasKey(j, "nope")
	if requests() != 3 {
		t.Fatalf("%d requests, want 3", requests())
	}
	if st := j.Status(); st.LastError != "" || len(st.KeyIDs) != 2 {
		t.Fatalf("304 answer: status %+v", st)
	}

	// The set is refetched every RefreshInterval, in the background of a lookup.
	srv.serve(jwksDoc(t, map[string]crypto.PublicKey{"ec-2": f.other.Public()}), http.StatusOK)
	clock.advance(DefaultJWKSRefreshInterval)
	j.Key("ec-1") // due: starts a background read
	j.bg.Wait()
	if hasKey(j, "ec-1") || !hasKey(j, "ec-2") {
		t.Fatalf("after the timed refetch: keys %v, want [ec-2]", j.Status().KeyIDs)
	}
}

func TestJWKSURLBadAnswersKeepLastGood(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	good := jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public(), "rsa-1": f.rsa.Public()})
	srv := newJWKSServer(t, good)
	j := newTestJWKS(t, JWKSOptions{URL: srv.URL, Client: srv.Client(), Now: clock.Now})
	for _, bad := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"server error", good, http.StatusInternalServerError, "status 500"},
		{"not found", good, http.StatusNotFound, "status 404"},
		{"garbage", []byte("<html>"), http.StatusOK, "jwks"},
		{"no keys member", []byte(`{}`), http.StatusOK, `no "keys"`},
		{"empty set", []byte(`{"keys":[]}`), http.StatusOK, "no usable"},
		{"duplicate kid", []byte(`{"keys":[` + strings.Repeat(string(mustJWK(t, f.ec.Public(), "x"))+",", 2) + `{"kty":"oct"}]}`), http.StatusOK, "twice"},
		{"oversized", []byte(strings.Repeat(" ", athenz.MaxJWKSLength+1)), http.StatusOK, "more than"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			srv.serve(bad.body, bad.status)
			clock.advance(time.Minute)
			err := j.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("Refresh = %v, want an error containing %q", err, bad.want)
			}
			if !hasKey(j, "ec-1") || !hasKey(j, "rsa-1") {
				t.Fatalf("last good set lost: %v", j.Status().KeyIDs)
			}
			if st := j.Status(); st.LastError == "" || st.LastSuccess.Equal(clock.Now()) {
				t.Fatalf("status %+v does not report the failure", st)
			}
		})
	}
	srv.serve(good, http.StatusOK)
	clock.advance(time.Minute)
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := j.Status(); st.LastError != "" {
		t.Fatalf("recovered: status %+v", st)
	}
}

func mustJWK(tb testing.TB, pub crypto.PublicKey, kid string) []byte {
	tb.Helper()
	k, err := athenz.JWKFromPublicKey(pub, kid, true)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(k)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestJWKSConcurrentUnknownKidFetchesOnce(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	srv := newJWKSServer(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	j := newTestJWKS(t, JWKSOptions{URL: srv.URL, Client: srv.Client(), Now: clock.Now})
	srv.serve(jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public(), "ec-2": f.other.Public()}), http.StatusOK)
	clock.advance(DefaultJWKSMinRefetch)
	var wg sync.WaitGroup
	var found atomic.Int32
	for range 32 {
		wg.Go(func() {
			if hasKey(j, "ec-2") {
				found.Add(1)
			}
		})
	}
	wg.Wait()
	if n := srv.requests.Load(); n != 2 || found.Load() != 32 {
		t.Fatalf("%d requests (want 2), %d of 32 lookups found ec-2", n, found.Load())
	}
}

func TestJWKSLookupHonoursContext(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	srv := newJWKSServer(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	j := newTestJWKS(t, JWKSOptions{URL: srv.URL, Client: srv.Client(), Now: clock.Now})
	hold, entered := make(chan struct{}), make(chan struct{}, 1)
	srv.mu.Lock()
	srv.hold, srv.entered = hold, entered
	srv.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- j.Refresh(context.Background()) }()
	<-entered // the fetch is in flight
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := j.KeyContext(ctx, "ec-9"); ok {
		t.Fatal("unknown kid found")
	}
	if !hasKey(j, "ec-1") {
		t.Fatal("known kid blocked by a fetch in flight")
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestJWKSRun(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	srv := newJWKSServer(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	j := newTestJWKS(t, JWKSOptions{URL: srv.URL, Client: srv.Client(), Now: clock.Now, RefreshInterval: 10 * time.Minute})
	ticks := make(chan time.Time)
	waits := make(chan time.Duration, 4)
	j.after = func(d time.Duration) <-chan time.Time {
		waits <- d
		return ticks
	}
	seen := make(chan int, 4)
	srv.mu.Lock()
	srv.seen = seen
	srv.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()

	if d := <-waits; d != 10*time.Minute {
		t.Fatalf("Run waits %s, want the refresh interval", d)
	}
	srv.serve(jwksDoc(t, map[string]crypto.PublicKey{"ec-2": f.other.Public()}), http.StatusOK)
	clock.advance(10 * time.Minute)
	ticks <- clock.Now()
	if status := <-seen; status != http.StatusOK {
		t.Fatalf("Run's fetch answered %d", status)
	}
	if d := <-waits; d != 10*time.Minute {
		t.Fatalf("after a read Run waits %s, want the refresh interval", d)
	}
	if !slices.Equal(j.Status().KeyIDs, []string{"ec-2"}) {
		t.Fatalf("keys after Run's read: %v", j.Status().KeyIDs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestJWKSNewErrors(t *testing.T) {
	srv := newJWKSServer(t, []byte("{}"))
	srv.serve(nil, http.StatusServiceUnavailable)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts JWKSOptions
		want string
	}{
		{"nothing", JWKSOptions{}, "set a file or a url"},
		{"both", JWKSOptions{File: garbage, URL: srv.URL}, "not both"},
		{"not http", JWKSOptions{URL: "file:///etc/passwd"}, "not an http(s) URL"},
		{"server down", JWKSOptions{URL: srv.URL, Client: srv.Client()}, "status 503"},
		{"missing file", JWKSOptions{File: filepath.Join(dir, "nope.json")}, "no such file"},
		{"garbage file", JWKSOptions{File: garbage}, "jwks"},
		{"negative interval", JWKSOptions{File: garbage, RefreshInterval: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewJWKS(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewJWKS = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCredJWKSURLEndToEnd runs access tokens through an Authenticator reading its keys
// from a JWKS URL: a rotated key is accepted once MinRefetch has passed.
func TestCredJWKSURLEndToEnd(t *testing.T) {
	f := credKeys(t)
	clock := &jwClock{now: credNow}
	srv := newJWKSServer(t, jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	cfg := credConfig(t, f)
	cfg.AccessToken.JWKSURL = srv.URL + "/zts/v1/oauth2/keys?rfc=true"
	a, err := NewAuthenticator(cfg, nil, WithHTTPClient(srv.Client()), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.JWKS().bg.Wait)
	auth := func(tok string) error {
		_, err := a.Authenticate(context.Background(), credInput(bearer(tok), f.api.uri, f.api.enc))
		return err
	}
	if err := auth(f.accessToken(t, f.ec, "ec-1", nil)); err != nil {
		t.Fatal(err)
	}
	srv.serve(jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public(), "ec-2": f.other.Public()}), http.StatusOK)
	rotated := f.accessToken(t, f.other, "ec-2", nil)
	var ce *CredentialError
	if err := auth(rotated); !errors.As(err, &ce) || ce.Reason != "access_token_unknown_key" {
		t.Fatalf("rotated key within MinRefetch: %v", err)
	}
	clock.advance(DefaultJWKSMinRefetch)
	if err := auth(rotated); err != nil {
		t.Fatalf("rotated key after MinRefetch: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCredJWKSFileConfig(t *testing.T) {
	f := credKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksDoc(t, map[string]crypto.PublicKey{"rsa-1": f.rsa.Public()}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := credConfig(t, f)
	cfg.AccessToken.JWKSFile = path
	a, err := NewAuthenticator(cfg, nil, WithClock(func() time.Time { return credNow }))
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Authenticate(context.Background(), credInput(bearer(f.accessToken(t, f.rsa, "rsa-1", nil)), "", f.api.enc))
	if err != nil || c.Source != SourceAccessToken {
		t.Fatalf("Authenticate = %+v, %v", c, err)
	}
	if st := a.JWKS().Status(); st.Source != path || !slices.Equal(st.KeyIDs, []string{"rsa-1"}) {
		t.Fatalf("status %+v", st)
	}
}

// TestJWKSURLTrustsConfiguredCA checks that an https jwks_url is fetched trusting
// credentials.access_token.ca_file, or bundle.ca_file when that is empty, and that a
// server certificate from another CA is refused (the system roots do not know it).
func TestJWKSURLTrustsConfiguredCA(t *testing.T) {
	f := credKeys(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwksDoc(t, map[string]crypto.PublicKey{"ec-1": f.ec.Public()}))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another CA: httptest's servers all share one certificate, so make one.
	otherCA := filepath.Join(dir, "other-ca.pem")
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	otherDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, otherKey.Public(), otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: otherDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		tokenCA, bundle string
		wantErr         bool
	}{
		{"access_token.ca_file", serverCA, "", false},
		{"bundle.ca_file as the default", "", serverCA, false},
		{"access_token.ca_file wins over bundle.ca_file", serverCA, otherCA, false},
		{"a CA that did not sign the server", otherCA, "", true},
		{"system roots", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Bundle: BundleConfig{URL: "https://issuer.invalid/zts/v1/bundle", CAFile: tc.bundle}}
			cfg.Credentials = credConfig(t, f)
			cfg.Credentials.AccessToken.JWKSURL = srv.URL + "/zts/v1/oauth2/keys"
			cfg.Credentials.AccessToken.CAFile = tc.tokenCA
			err := Preflight(cfg)
			if tc.wantErr != (err != nil) {
				t.Fatalf("Preflight = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not say the certificate is the problem", err)
			}
		})
	}
}
