package sds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// tapiNoSweep disables the background refresher's effect: tests of the request path
// must not race a sweep.
const tapiNoSweep = 24 * time.Hour

// expectError checks an error answer: status, Retry-After and the fetch count so far.
func (e *tapiEnv) expectError(path string, status int, retryAfter string, fetches int) tapiErrorResponse {
	e.t.Helper()
	r := e.get(path)
	var er tapiErrorResponse
	if r.status != http.StatusOK {
		r.decode(e.t, &er)
	}
	if r.status != status || r.header.Get("Retry-After") != retryAfter {
		e.t.Errorf("%s: %d Retry-After %q (%s), want %d Retry-After %q", path, r.status, r.header.Get("Retry-After"), r.body, status, retryAfter)
	}
	if c := e.fetcher.count(); c != fetches {
		e.t.Errorf("%s: %d fetches, want %d", path, c, fetches)
	}
	return er
}

func TestTokenAPIRefusalRemembered(t *testing.T) {
	cases := []struct {
		name   string
		ttl    time.Duration // NegativeTTL; 0: the default
		path   string
		kind   string
		err    error
		status int
	}{
		{"403 access token", 0, "/v1/token?domain=sports&role=writers", "access_token", &IssuerError{Status: 403, Message: "no role writers"}, 403},
		{"404 role token", 0, "/v1/roletoken?domain=nosuch", "role_token", &IssuerError{Status: 404, Message: "unknown domain"}, 404},
		{"401 with NegativeTTL 3s", 3 * time.Second, "/v1/token?domain=sports", "access_token", fmt.Errorf("fetch: %w", &IssuerError{Status: 401, Message: "cert"}), 401},
		{"400", 0, "/v1/roletoken?domain=sports&role=r", "role_token", tapiStatusErr{400}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTapiEnv(t, TokenAPIConfig{NegativeTTL: tc.ttl, RefreshInterval: tapiNoSweep}, nil)
			e.fetcher.set(func(f *tapiFetcher) { f.err = tc.err })
			ttl := cmp.Or(tc.ttl, DefaultTokenNegativeTTL)
			secs := strconv.Itoa(int(ttl / time.Second))
			const n = 5
			first := e.expectError(tc.path, tc.status, secs, 1)
			for range n - 1 {
				if er := e.expectError(tc.path, tc.status, secs, 1); er != first {
					t.Errorf("from memory: %+v, want the first answer %+v", er, first)
				}
			}
			if got := e.metric("cache_lookups_total", map[string]string{"kind": tc.kind, "result": tapiResultNegative}); got != n-1 {
				t.Errorf("negative lookups = %v, want %d", got, n-1)
			}
			e.clock.Advance(ttl - time.Second)
			e.expectError(tc.path, tc.status, "1", 1)
			e.clock.Advance(time.Second)
			e.expectError(tc.path, tc.status, secs, 2) // the TTL ended: asked again
		})
	}
}

// Transient failures back off 1, 2, 4 ... s up to 30 s; nothing reaches the issuer in
// between.
func TestTokenAPIFailureBackoff(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
	}{
		{"issuer 500", &IssuerError{Status: 500, Message: "database down"}, 502},
		{"issuer unreachable", errors.New("connection refused"), 502},
		{"issuer timeout", fmt.Errorf("post: %w", context.DeadlineExceeded), 504},
		{"issuer 429", tapiStatusErr{429}, 429},
	}
	windows := []int{1, 2, 4, 8, 16, 30, 30, 30}
	const path = "/v1/token?domain=sports&role=readers"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTapiEnv(t, TokenAPIConfig{RefreshInterval: tapiNoSweep}, nil)
			e.fetcher.set(func(f *tapiFetcher) { f.err = tc.err })
			e.expectError(path, tc.status, "1", 1)
			for i, w := range windows[:len(windows)-1] {
				if w > 1 {
					e.clock.Advance(time.Duration(w-1) * time.Second)
					e.expectError(path, tc.status, "1", i+1) // still inside window i
				}
				e.clock.Advance(time.Second)
				e.expectError(path, tc.status, strconv.Itoa(windows[i+1]), i+2)
			}
		})
	}
}

// A success, or a new certificate for the identity, forgets a remembered failure.
func TestTokenAPIFailureForgotten(t *testing.T) {
	const path = "/v1/token?domain=sports&role=readers"
	down := &IssuerError{Status: 500, Message: "down"}
	cases := []struct {
		name    string
		err     error
		status  int
		between func(e *tapiEnv)
		fetches int // made by between
		want    string
	}{
		{"success forgets a backoff", down, 502, func(e *tapiEnv) {
			e.fetcher.set(func(f *tapiFetcher) { f.err = nil })
			e.clock.Advance(4 * time.Second) // the third window
			e.accessToken("domain=sports&role=readers")
			if n := e.api.tokens.failures.Len(); n != 0 {
				e.t.Errorf("%d failures remembered after a success", n)
			}
			e.clock.Advance(time.Hour) // the token expired
			e.fetcher.set(func(f *tapiFetcher) { f.err = down })
		}, 1, "1"},
		{"rotation forgets a backoff", down, 502, func(e *tapiEnv) { e.issue(idAPI) }, 0, "1"},
		{"rotation forgets a refusal", &IssuerError{Status: 403, Message: "no"}, 403, func(e *tapiEnv) { e.issue(idAPI) }, 0, "10"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTapiEnv(t, TokenAPIConfig{RefreshInterval: tapiNoSweep}, nil)
			e.fetcher.set(func(f *tapiFetcher) { f.err = tc.err })
			e.get(path)
			e.clock.Advance(time.Second)
			e.get(path)
			e.clock.Advance(2 * time.Second)
			e.get(path)
			before := e.fetcher.count()
			e.get(path)
			if c := e.fetcher.count(); c != before {
				t.Fatalf("inside the window: %d fetches, want %d", c, before)
			}
			tc.between(e)
			e.expectError(path, tc.status, tc.want, before+tc.fetches+1)
		})
	}
}

// While the issuer fails transiently, a request past renewAt gets the cached token as long
// as it is valid; a refusal is not papered over.
func TestTokenAPIServesValidTokenWhileIssuerFails(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int // past renewAt, before expiry
	}{
		{"issuer down", &IssuerError{Status: 503, Message: "down"}, 200},
		{"issuer timeout", context.DeadlineExceeded, 200},
		{"issuer refuses", &IssuerError{Status: 403, Message: "role removed"}, 403},
	}
	const q = "domain=sports&role=readers"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTapiEnv(t, TokenAPIConfig{RenewBefore: 5 * time.Minute, RefreshInterval: tapiNoSweep}, nil)
			first := e.accessToken(q)
			e.fetcher.set(func(f *tapiFetcher) { f.err = tc.err })
			e.clock.Advance(55 * time.Minute) // renewAt
			for _, step := range []time.Duration{0, 500 * time.Millisecond, 500 * time.Millisecond, 4*time.Minute + 58*time.Second} {
				e.clock.Advance(step)
				r := e.get("/v1/token?" + q)
				if r.status != tc.status {
					t.Fatalf("after %s more: %d %s, want %d", step, r.status, r.body, tc.status)
				}
				var got tapiAccessTokenResponse
				if r.decode(t, &got); tc.status == 200 && got.AccessToken != first.AccessToken {
					t.Errorf("after %s more: a different token", step)
				}
			}
			if tc.status == 200 {
				if got := e.metric("cache_lookups_total", map[string]string{"kind": "access_token", "result": tapiResultStale}); got < 1 {
					t.Errorf("stale lookups = %v, want some", got)
				}
			}
			e.clock.Advance(time.Second) // expired
			if r := e.get("/v1/token?" + q); r.status == 200 || r.header.Get("Retry-After") == "" {
				t.Errorf("expired: %d Retry-After %q, want an error with Retry-After", r.status, r.header.Get("Retry-After"))
			}
		})
	}
}

// Background renewal backs off after a failure, the cached token is served until it
// expires, and a success ends it.
func TestTokenAPIBackgroundRenewalBackoff(t *testing.T) {
	const q = "domain=sports&role=readers"
	e := newTapiEnv(t, TokenAPIConfig{RenewBefore: 5 * time.Minute, RefreshInterval: time.Second}, nil)
	e.clock.waitIdle(t)
	start := e.clock.Now()
	first := e.accessToken(q)
	e.fetcher.set(func(f *tapiFetcher) { f.err = &IssuerError{Status: 500, Message: "down"} })
	step := func(d time.Duration, fetches int) {
		t.Helper()
		e.clock.Advance(d)
		e.clock.waitIdle(t) // the sweep ran
		if c := e.fetcher.count(); c != fetches {
			t.Fatalf("at %s: %d fetches, want %d", e.clock.Now().Sub(start), c, fetches)
		}
		if got := e.accessToken(q); got.AccessToken != first.AccessToken {
			t.Fatalf("at %s: a different token", e.clock.Now().Sub(start))
		}
	}
	step(55*time.Minute-time.Second, 2) // the last sweep before renewAt tries, and fails
	fetches := 2
	for _, w := range []int{1, 2, 4, 8, 16, 30, 30} {
		for range w - 1 {
			step(time.Second, fetches) // backing off
		}
		fetches++
		step(time.Second, fetches)
	}
	if got := e.metric("fetch_seconds", map[string]string{"kind": "access_token", "trigger": "background", "outcome": "error"}); got != float64(fetches-1) {
		t.Errorf("background errors = %v, want %d", got, fetches-1)
	}
	last := start.Add(time.Hour - time.Second)
	e.clock.Advance(last.Sub(e.clock.Now()))
	e.clock.waitIdle(t)
	if got := e.accessToken(q); got.AccessToken != first.AccessToken || got.ExpiresIn != 1 {
		t.Errorf("a second before expiry: expires_in %d, same token %v; want the cached token", got.ExpiresIn, got.AccessToken == first.AccessToken)
	}
	e.clock.Advance(time.Second)
	e.clock.waitIdle(t)
	if r := e.get("/v1/token?" + q); r.status != http.StatusBadGateway || r.header.Get("Retry-After") == "" {
		t.Errorf("expired: %d Retry-After %q, want 502 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	e.fetcher.set(func(f *tapiFetcher) { f.err = nil })
	e.clock.Advance(30 * time.Second)
	e.clock.waitIdle(t)
	if got := e.accessToken(q); got.AccessToken == first.AccessToken || got.ExpiresIn != 3600 {
		t.Errorf("after the issuer recovered: same token %v, expires_in %d; want a renewed token", got.AccessToken == first.AccessToken, got.ExpiresIn)
	}
	if n := e.api.tokens.failures.Len(); n != 0 {
		t.Errorf("%d failures remembered after the renewal succeeded", n)
	}
}

// Concurrent requests that fail share one fetch, and all get its answer.
func TestTokenAPIConcurrentFailure(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{RefreshInterval: tapiNoSweep}, nil)
	gate := make(chan struct{})
	e.fetcher.set(func(f *tapiFetcher) { f.gate, f.err = gate, &IssuerError{Status: 403, Message: "no"} })
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := e.get("/v1/token?domain=sports")
			if r.status != http.StatusForbidden || r.header.Get("Retry-After") != "10" {
				t.Errorf("caller %d: %d Retry-After %q", i, r.status, r.header.Get("Retry-After"))
			}
		})
	}
	<-e.fetcher.started
	for e.metric("cache_lookups_total", map[string]string{"kind": "access_token", "result": tapiResultMiss}) < n {
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	e.expectError("/v1/token?domain=sports", http.StatusForbidden, "10", 1)
}

func TestTokenAPIFailuresBounded(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{MaxCachedTokens: 2, RefreshInterval: tapiNoSweep}, nil)
	e.fetcher.set(func(f *tapiFetcher) { f.err = &IssuerError{Status: 403, Message: "no"} })
	for _, d := range []string{"d1", "d2", "d3"} {
		e.get("/v1/token?domain=" + d)
	}
	if n := e.api.tokens.failures.Len(); n != 2 {
		t.Errorf("%d failures remembered, want 2", n)
	}
	if got := e.metric("cached_failures", nil); got != 2 {
		t.Errorf("cached_failures = %v, want 2", got)
	}
	e.expectError("/v1/token?domain=d3", http.StatusForbidden, "10", 3) // recent: remembered
	e.expectError("/v1/token?domain=d1", http.StatusForbidden, "10", 4) // evicted: asked again
}

func TestTapiBackoff(t *testing.T) {
	cases := []struct {
		name   string
		streak int
		want   time.Duration
	}{
		{"first failure", 1, time.Second},
		{"second", 2, 2 * time.Second},
		{"fifth", 5, 16 * time.Second},
		{"sixth reaches the cap", 6, 30 * time.Second},
		{"stays at the cap", 7, 30 * time.Second},
		{"long outage", 1000, 30 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tapiBackoff(tc.streak); got != tc.want {
				t.Errorf("tapiBackoff(%d) = %s, want %s", tc.streak, got, tc.want)
			}
		})
	}
}

func TestTapiJitter(t *testing.T) {
	cases := []struct {
		name string
		d    time.Duration
	}{
		{"base", tapiBackoffBase},
		{"cap", tapiBackoffMax},
		{"tiny", 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 1000 {
				if got := tapiJitter(tc.d); got > tc.d || got < tc.d-tc.d/4 {
					t.Fatalf("tapiJitter(%s) = %s, want within (3/4 d, d]", tc.d, got)
				}
			}
		})
	}
}
