package sds

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestTokenAPICoalescing(t *testing.T) {
	cases := []struct {
		name, path, kind string
	}{
		{"access token", "/v1/token?domain=sports&role=readers", "access_token"},
		{"role token", "/v1/roletoken?domain=sports&role=readers", "role_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTapiEnv(t, TokenAPIConfig{}, nil)
			gate := make(chan struct{})
			e.fetcher.set(func(f *tapiFetcher) { f.gate = gate })
			const n = 16
			bodies := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					r := e.get(tc.path)
					if r.status != http.StatusOK {
						t.Errorf("caller %d: %d %s", i, r.status, r.body)
					}
					bodies[i] = string(r.body)
				})
			}
			// Hold the one fetch until every caller has missed the cache and joined it.
			<-e.fetcher.started
			for e.metric("cache_lookups_total", map[string]string{"kind": tc.kind, "result": "miss"}) < n {
				runtime.Gosched()
			}
			close(gate)
			wg.Wait()
			if c := e.fetcher.count(); c != 1 {
				t.Errorf("%d concurrent callers caused %d fetches, want 1", n, c)
			}
			for i := range bodies {
				if bodies[i] != bodies[0] {
					t.Errorf("caller %d got a different token", i)
				}
			}
		})
	}
}

// A caller that gives up does not fail the shared fetch for the others.
func TestTokenAPICoalescedCallerLeaves(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	gate := make(chan struct{})
	e.fetcher.set(func(f *tapiFetcher) { f.gate = gate })
	k := tapiKey{identity: idAPI, kind: tapiAccess, domain: "sports", roles: "readers"}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, _, err := e.api.tokens.get(ctx, k); errc <- err }()
	<-e.fetcher.started
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a canceled caller got a token")
	}
	close(gate)
	e.accessToken("domain=sports&role=readers")
	if c := e.fetcher.count(); c != 1 {
		t.Errorf("%d fetches, want 1: the canceled caller's fetch should have been kept", c)
	}
}

func TestTokenAPIRenewBeforeExpiry(t *testing.T) {
	// No background refresh: the sweep would race with the requests below.
	e := newTapiEnv(t, TokenAPIConfig{RenewBefore: 5 * time.Minute, RefreshInterval: 24 * time.Hour}, nil)
	first := e.accessToken("domain=sports&role=readers")
	cases := []struct {
		name     string
		advance  time.Duration
		fetches  int
		sameAsV1 bool
		expires  int64
	}{
		{"fresh", 10 * time.Minute, 1, true, 50 * 60},
		{"just before the margin", 44*time.Minute + 59*time.Second, 1, true, 5*60 + 1},
		{"inside the margin", time.Second, 2, false, 60 * 60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(tc.advance)
			got := e.accessToken("domain=sports&role=readers")
			if c := e.fetcher.count(); c != tc.fetches {
				t.Errorf("%d fetches, want %d", c, tc.fetches)
			}
			if (got.AccessToken == first.AccessToken) != tc.sameAsV1 || got.ExpiresIn != tc.expires {
				t.Errorf("same token = %v, expires_in = %d; want %v, %d", got.AccessToken == first.AccessToken, got.ExpiresIn, tc.sameAsV1, tc.expires)
			}
		})
	}
}

// Short-lived tokens are renewed halfway through their life, not RenewBefore ahead.
func TestTokenAPIRenewShortLived(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{RenewBefore: 5 * time.Minute, RefreshInterval: 24 * time.Hour}, nil)
	e.fetcher.set(func(f *tapiFetcher) { f.ttl = 4 * time.Minute })
	e.accessToken("domain=sports&role=readers")
	e.clock.Advance(119 * time.Second)
	e.accessToken("domain=sports&role=readers")
	if c := e.fetcher.count(); c != 1 {
		t.Errorf("before half-life: %d fetches, want 1", c)
	}
	e.clock.Advance(time.Second)
	e.accessToken("domain=sports&role=readers")
	if c := e.fetcher.count(); c != 2 {
		t.Errorf("at half-life: %d fetches, want 2", c)
	}
}

func TestTokenAPIBackgroundRefresh(t *testing.T) {
	cfg := TokenAPIConfig{RenewBefore: 5 * time.Minute, RefreshInterval: 30 * time.Second, IdleTimeout: 40 * time.Minute}
	e := newTapiEnv(t, cfg, nil)
	e.clock.waitIdle(t)
	e.accessToken("domain=sports&role=readers")
	e.get("/v1/roletoken?domain=sports")
	e.accessToken("domain=weather&role=readers") // used once, then idle

	steps := []struct {
		name    string
		advance time.Duration
		use     bool // request the sports tokens after the sweep
		fetches int
	}{
		{"early sweep renews nothing", 10 * time.Minute, true, 3},
		{"later sweep renews nothing", 30 * time.Minute, true, 3},
		{"sweep just before the refresh window", 14 * time.Minute, true, 3},
		{"sweep in the last interval before renewAt renews used tokens only", 30 * time.Second, false, 5},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e.clock.Advance(s.advance)
			e.clock.waitIdle(t) // the sweep ran and the refresher armed its next timer
			if c := e.fetcher.count(); c != s.fetches {
				t.Errorf("%d fetches, want %d", c, s.fetches)
			}
			if s.use {
				e.accessToken("domain=sports&role=readers")
				e.get("/v1/roletoken?domain=sports")
			}
		})
	}
	// The renewed tokens are served from the cache past the old renewAt.
	e.clock.Advance(5 * time.Minute)
	got := e.accessToken("domain=sports&role=readers")
	if c := e.fetcher.count(); c != 5 || got.ExpiresIn != int64(55*time.Minute/time.Second) {
		t.Errorf("after renewal: %d fetches, expires_in %d; want 5 and the renewed token", c, got.ExpiresIn)
	}
}

func TestTokenAPIRotationEvictsBoundTokens(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	e.fetcher.set(func(f *tapiFetcher) { f.cnf = true })
	bound := e.accessToken("domain=sports&role=readers")
	e.fetcher.set(func(f *tapiFetcher) { f.cnf = false })
	unbound := e.accessToken("domain=weather&role=readers")
	var role, nt tapiTokenResponse
	e.get("/v1/roletoken?domain=sports").decode(t, &role)
	e.get("/v1/ntoken").decode(t, &nt)

	leaf := e.issue(idAPI) // rotation: a new certificate and key
	cases := []struct {
		name    string
		path    string
		old     string
		renewed bool
	}{
		{"cnf-bound access token", "/v1/token?domain=sports&role=readers", bound.AccessToken, true},
		{"access token without cnf", "/v1/token?domain=weather&role=readers", unbound.AccessToken, false},
		{"role token", "/v1/roletoken?domain=sports", role.Token, false},
		{"n-token", "/v1/ntoken", nt.Token, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(tc.path)
			var v struct {
				AccessToken string `json:"access_token"`
				Token       string `json:"token"`
			}
			r.decode(t, &v)
			got := v.AccessToken + v.Token
			if (got != tc.old) != tc.renewed {
				t.Errorf("renewed = %v, want %v", got != tc.old, tc.renewed)
			}
		})
	}
	tok, err := athenz.ParseNToken(func() string {
		var v tapiTokenResponse
		e.get("/v1/ntoken").decode(t, &v)
		return v.Token
	}())
	if err != nil || tok.Verify(leaf.Key.Public(), e.clock.Now(), athenz.NTokenOptions{}) != nil {
		t.Errorf("the n-token after rotation does not verify with the new key: %v", err)
	}
}

func TestTokenAPILRUBound(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{MaxCachedTokens: 2}, nil)
	for _, d := range []string{"d1", "d2", "d3"} {
		e.accessToken("domain=" + d)
	}
	if n := e.api.tokens.lru.Len(); n != 2 {
		t.Errorf("%d cached tokens, want 2", n)
	}
	e.accessToken("domain=d3")
	if c := e.fetcher.count(); c != 3 {
		t.Errorf("recent token: %d fetches, want 3", c)
	}
	e.accessToken("domain=d1")
	if c := e.fetcher.count(); c != 4 {
		t.Errorf("evicted token: %d fetches, want 4", c)
	}
}

// Removing an identity drops its tokens at the next sweep, and requests answer 503.
func TestTokenAPIIdentityRemoved(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{RefreshInterval: time.Minute}, nil)
	e.clock.waitIdle(t)
	e.accessToken("domain=sports")
	e.cache.RemoveIdentity(idAPI)
	if r := e.get("/v1/token?domain=sports&identity=sports.api"); r.status != http.StatusServiceUnavailable {
		t.Errorf("removed identity: %d, want 503", r.status)
	}
	e.clock.Advance(time.Minute)
	e.clock.waitIdle(t)
	if n := e.api.tokens.lru.Len(); n != 0 {
		t.Errorf("%d tokens cached for a removed identity", n)
	}
}
