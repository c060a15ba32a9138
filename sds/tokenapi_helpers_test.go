package sds

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// tapiFakeClock is the token cache's clock in tests: time moves only on Advance, and the
// refresher's timers fire then. waiting is signalled whenever a timer is armed, so a test
// knows the refresher finished a sweep and is idle again.
type tapiFakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []tapiFakeTimer
	waiting chan struct{}
}

type tapiFakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newTapiFakeClock() *tapiFakeClock {
	return &tapiFakeClock{now: time.Now().Truncate(time.Second), waiting: make(chan struct{}, 1)}
}

func (c *tapiFakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *tapiFakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, tapiFakeTimer{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	signal(c.waiting)
	return ch
}

// Advance moves time forward and fires the timers that are due.
func (c *tapiFakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(c.now) {
			tm.ch <- c.now
			continue
		}
		kept = append(kept, tm)
	}
	c.timers = kept
}

// waitIdle waits until the refresher has armed its next timer.
func (c *tapiFakeClock) waitIdle(t testing.TB) {
	t.Helper()
	<-c.waiting
}

// tapiCall is one call the fake fetcher received.
type tapiCall struct {
	kind, identity, domain string
	roles                  []string
	lifetime               time.Duration
}

// tapiFetcher is a TokenFetcher driven by the test: it counts calls, returns err when set,
// and, when gate is set, holds every call until the test sends on gate.
type tapiFetcher struct {
	clock   *tapiFakeClock
	started chan struct{}

	mu    sync.Mutex
	calls []tapiCall
	seq   int
	err   error
	ttl   time.Duration
	cnf   bool
	gate  chan struct{}
	// panics makes every call panic.
	panics bool
}

func newTapiFetcher(clock *tapiFakeClock) *tapiFetcher {
	return &tapiFetcher{clock: clock, started: make(chan struct{}, 1024), ttl: time.Hour}
}

func (f *tapiFetcher) set(fn func(f *tapiFetcher)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *tapiFetcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *tapiFetcher) lastCall() tapiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

func (f *tapiFetcher) begin(ctx context.Context, c tapiCall) (int, bool, error) {
	f.mu.Lock()
	f.seq++
	n, gate, err, cnf, panics := f.seq, f.gate, f.err, f.cnf, f.panics
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if panics {
		panic("fetcher bug")
	}
	f.started <- struct{}{}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	return n, cnf, err
}

func (f *tapiFetcher) expiry() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock.Now().Add(f.ttl)
}

// AccessToken returns a JWT-shaped token (not signed: the API does not verify what the
// issuer returns) whose jti is the call number.
func (f *tapiFetcher) AccessToken(ctx context.Context, identity string, req AccessTokenRequest) (*Token, error) {
	n, cnf, err := f.begin(ctx, tapiCall{"access", identity, req.Domain, req.Roles, req.ExpiresIn})
	if err != nil {
		return nil, err
	}
	scp := req.Roles
	if len(scp) == 0 {
		scp = []string{"admin", "readers"}
	}
	claims := map[string]any{"aud": req.Domain, "sub": identity, "scp": scp, "jti": strconv.Itoa(n)}
	if cnf {
		claims["cnf"] = map[string]string{"x5t#S256": "thumbprint"}
	}
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return &Token{Value: enc([]byte(`{"alg":"ES256","typ":"at+jwt"}`)) + "." + enc(payload) + "." + enc([]byte("sig")), Expiry: f.expiry()}, nil
}

// RoleToken returns a role-token-shaped value numbered by call.
func (f *tapiFetcher) RoleToken(ctx context.Context, identity string, req RoleTokenRequest) (*Token, error) {
	n, _, err := f.begin(ctx, tapiCall{"role", identity, req.Domain, req.Roles, req.MaxExpiry})
	if err != nil {
		return nil, err
	}
	v := "v=Z1;d=" + req.Domain + ";r=" + strings.Join(req.Roles, ",") + ";p=" + identity + ";a=" + strconv.Itoa(n) + ";s=sig"
	return &Token{Value: v, Expiry: f.expiry()}, nil
}

// tapiEnv is a TokenAPI serving on 127.0.0.1:0 with a test clock and fetcher, and a cache
// holding idAPI and the bundle.
type tapiEnv struct {
	t       *testing.T
	ca      *sdstest.CA
	cache   *Cache
	clock   *tapiFakeClock
	fetcher *tapiFetcher
	api     *TokenAPI
	reg     *prometheus.Registry
	logs    *syncBuffer
	base    string
	client  *http.Client
	leaf    *sdstest.Leaf
}

// newTapiEnv starts the API; it is stopped, and its goroutines checked for leaks, when
// the test ends. deps.Authorizer is used if set.
func newTapiEnv(t *testing.T, cfg TokenAPIConfig, auth Authorizer) *tapiEnv {
	t.Helper()
	checkLeaks(t)
	ca, err := sdstest.NewCA("token api root")
	if err != nil {
		t.Fatal(err)
	}
	e := &tapiEnv{t: t, ca: ca, cache: NewCache(), clock: newTapiFakeClock(), reg: prometheus.NewPedanticRegistry(), logs: &syncBuffer{}}
	e.fetcher = newTapiFetcher(e.clock)
	e.leaf = e.issue(idAPI)
	if err := e.cache.SetBundle(&Bundle{Roots: []*x509.Certificate{ca.Cert}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.api, err = NewTokenAPI(cfg, TokenAPIDeps{Cache: e.cache, Fetcher: e.fetcher, Authorizer: auth, Logger: log, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.api.tokens.clock = e.clock
	e.api.tokens.failures.jitter = func(d time.Duration) time.Duration { return d } // exact backoffs
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr}
	var lis net.Listener
	if cfg.DisableTCP {
		lis, err = listenUnix(cfg.SocketPath, DefaultDirMode, 0o600)
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.SocketPath)
		}
		e.base = "http://agent"
	} else {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		e.base = "http://" + lis.Addr().String()
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.api.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// issue puts a new certificate for principal in the cache.
func (e *tapiEnv) issue(principal string) *sdstest.Leaf {
	e.t.Helper()
	l, err := e.ca.Issue(principal, spiffeOf(principal), time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.cache.SetIdentity(principal, &Credential{Chain: l.Chain, Key: l.Key}); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// tapiResponse is an answer of the API.
type tapiResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r tapiResponse) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request and reads the whole answer.
func (e *tapiEnv) do(method, pathAndQuery string) tapiResponse {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+pathAndQuery, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return tapiResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

func (e *tapiEnv) get(pathAndQuery string) tapiResponse {
	e.t.Helper()
	return e.do(http.MethodGet, pathAndQuery)
}

// accessToken gets an access token and fails the test unless it is 200.
func (e *tapiEnv) accessToken(query string) tapiAccessTokenResponse {
	e.t.Helper()
	r := e.get("/v1/token?" + query)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET /v1/token?%s: %d %s", query, r.status, r.body)
	}
	var out tapiAccessTokenResponse
	r.decode(e.t, &out)
	return out
}

// metric reads a token API metric by its name after "token_api_" and its labels: a
// counter's or gauge's value, or a histogram's sample count; -1 when absent.
func (e *tapiEnv) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metricsNamespace+"_token_api_"+name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}
