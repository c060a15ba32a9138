package sds

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// tapiKind is the kind of a cached token.
type tapiKind uint8

const (
	tapiAccess tapiKind = iota + 1
	tapiRole
	tapiNToken
)

// String is the metrics label of the kind.
func (k tapiKind) String() string {
	switch k {
	case tapiAccess:
		return "access_token"
	case tapiRole:
		return "role_token"
	case tapiNToken:
		return "ntoken"
	}
	return "unknown"
}

// Fetch triggers (metrics label).
const (
	tapiTriggerRequest    = "request"
	tapiTriggerBackground = "background"
)

// Lookup results (metrics label).
const (
	tapiResultHit  = "hit"
	tapiResultMiss = "miss"
	// tapiResultNegative: answered from the negative cache with the remembered error.
	tapiResultNegative = "negative"
	// tapiResultStale: a still valid token served past its renewal point, because the
	// issuer is backing off after a transient failure.
	tapiResultStale = "stale"
)

// tapiBackgroundFetches bounds the issuer calls one refresher sweep makes at once.
const tapiBackgroundFetches = 4

// tapiKey names a cached token: equal requests, whatever the order or repetition of their
// roles, have equal keys.
type tapiKey struct {
	identity string
	kind     tapiKind
	domain   string
	roles    string // sorted, deduplicated, comma-joined
	lifetime time.Duration
}

func (k tapiKey) roleList() []string {
	if k.roles == "" {
		return nil
	}
	return strings.Split(k.roles, ",")
}

// flight is the singleflight key: the fields joined with a byte no name contains.
func (k tapiKey) flight() string {
	return strings.Join([]string{k.identity, k.kind.String(), k.domain, k.roles, strconv.FormatInt(int64(k.lifetime), 10)}, "\x00")
}

// tapiEntry is a cached token. Everything but lastUsed is immutable once cached.
type tapiEntry struct {
	tok Token
	// scope is the access token's OAuth scope ("d:role.r1 d:role.r2"), "" when unknown.
	scope string
	// certDigest is the identity's certificate (CredentialEntry.Digest) when fetched.
	certDigest string
	// bound is set for tokens that stop being usable when the identity's certificate
	// changes: n-tokens (signed with its key) and access tokens with a cnf claim (or whose
	// claims could not be read).
	bound     bool
	fetchedAt time.Time
	// lastUsed is the clock's time of the last request served with the token, in unix
	// nanoseconds; only requests count, so an unused token stops being renewed.
	lastUsed atomic.Int64
}

// renewAt is when the token stops being served from the cache: RenewBefore before its
// expiry, or halfway through its life for short-lived tokens.
func (e *tapiEntry) renewAt(renewBefore time.Duration) time.Time {
	margin := min(renewBefore, e.tok.Expiry.Sub(e.fetchedAt)/2)
	return e.tok.Expiry.Add(-margin)
}

// tapiClock is the time source of the token cache; tests replace it.
type tapiClock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type tapiRealClock struct{}

func (tapiRealClock) Now() time.Time                         { return time.Now() }
func (tapiRealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// tapiTokenCache caches tokens per tapiKey in a bounded LRU, coalesces concurrent fetches
// of the same token, and renews recently used tokens ahead of expiry. Failed fetches are
// remembered per key (failures): requests inside the window get the remembered answer,
// background renewal waits for the window to end, and a still valid token is served
// while the issuer is failing.
type tapiTokenCache struct {
	cfg      *TokenAPIConfig
	cache    *Cache
	fetcher  TokenFetcher
	log      *slog.Logger
	limited  *rateLimitedLog
	metrics  *tokenAPIMetrics
	clock    tapiClock
	lru      *lru.Cache[tapiKey, *tapiEntry]
	failures *tapiFailures
	flights  singleflight.Group

	// bg is the parent of every fetch: fetches outlive the request that started them (the
	// other callers waiting on it must not fail because the first one left) until stop.
	bg       context.Context
	cancelBG context.CancelFunc
	mu       sync.Mutex // guards stopped against wg.Add
	stopped  bool
	wg       sync.WaitGroup
}

func newTapiTokenCache(cfg *TokenAPIConfig, cache *Cache, f TokenFetcher, log *slog.Logger, limited *rateLimitedLog, m *tokenAPIMetrics) (*tapiTokenCache, error) {
	l, err := lru.New[tapiKey, *tapiEntry](cfg.MaxCachedTokens)
	if err != nil {
		return nil, err
	}
	failures, err := newTapiFailures(cfg.MaxCachedTokens, cfg.NegativeTTL)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	return &tapiTokenCache{cfg: cfg, cache: cache, fetcher: f, log: log, limited: limited, metrics: m,
		clock: tapiRealClock{}, lru: l, failures: failures, bg: bg, cancelBG: cancel}, nil
}

// get returns a usable token for k from the cache or, on a miss, from one fetch shared
// with every concurrent caller. hit says whether it came from the cache. Inside a failure
// window it makes no fetch: it answers the remembered error, or serves the cached token
// if the failure was transient and the token is still valid; a fetch that fails
// transiently falls back on that token too.
func (c *tapiTokenCache) get(ctx context.Context, k tapiKey) (e *tapiEntry, hit bool, err error) {
	cur, ok := c.cache.Identity(k.identity)
	if !ok {
		return nil, false, tapiNotReady(k.identity)
	}
	now := c.clock.Now()
	seen, ok := c.lru.Get(k)
	if ok && c.fresh(seen, cur, now) {
		return c.serve(k, seen, now, tapiResultHit), true, nil
	}
	if f := c.failures.active(k, cur.Digest, now); f != nil {
		if f.transient() && ok && c.usable(seen, cur, now) {
			return c.serve(k, seen, now, tapiResultStale), true, nil
		}
		c.metrics.lookups.WithLabelValues(k.kind.String(), tapiResultNegative).Inc()
		return nil, false, f.reply(now)
	}
	c.metrics.lookups.WithLabelValues(k.kind.String(), tapiResultMiss).Inc()
	e, err = c.fetch(ctx, k, tapiTriggerRequest, seen)
	if err != nil {
		if ok && tapiTransient(err) && c.usable(seen, cur, c.clock.Now()) {
			seen.lastUsed.Store(now.UnixNano())
			return seen, true, nil
		}
		return nil, false, err
	}
	e.lastUsed.Store(now.UnixNano())
	return e, false, nil
}

// serve counts a lookup answered with the cached e and marks e used.
func (c *tapiTokenCache) serve(k tapiKey, e *tapiEntry, now time.Time, result string) *tapiEntry {
	e.lastUsed.Store(now.UnixNano())
	c.metrics.lookups.WithLabelValues(k.kind.String(), result).Inc()
	return e
}

// fresh reports whether e may be served now for the identity's current certificate
// without a fetch: it is bound to that certificate (or to none) and before renewAt.
func (c *tapiTokenCache) fresh(e *tapiEntry, cur *CredentialEntry, now time.Time) bool {
	return c.usable(e, cur, now) && now.Before(e.renewAt(c.cfg.RenewBefore))
}

// usable reports whether e may be served at all: it has not expired and it is bound to
// the identity's current certificate (or to none). Past renewAt it is served only while
// the issuer is failing.
func (c *tapiTokenCache) usable(e *tapiEntry, cur *CredentialEntry, now time.Time) bool {
	if e.bound && e.certDigest != cur.Digest {
		return false
	}
	return now.Before(e.tok.Expiry)
}

func tapiNotReady(identity string) *tapiError {
	return &tapiError{status: http.StatusServiceUnavailable, param: tapiParamIdentity,
		msg: fmt.Sprintf("identity %s has no certificate yet; retry shortly", identity), retryAfter: tapiRetryAfter}
}

var errTapiStopped = &tapiError{status: http.StatusServiceUnavailable, msg: "the token API is shutting down", retryAfter: tapiRetryAfter}

// fetch obtains k once for all concurrent callers; each caller waits until the shared
// fetch ends or its own ctx is done. seen is the entry the caller found unusable (nil for
// none): a fresh entry other than seen means a fetch that just ended already replaced it.
func (c *tapiTokenCache) fetch(ctx context.Context, k tapiKey, trigger string, seen *tapiEntry) (*tapiEntry, error) {
	res := make(chan singleflight.Result, 1)
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil, errTapiStopped
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		v, err, shared := c.flights.Do(k.flight(), func() (any, error) { return c.fetchOne(k, trigger, seen) })
		res <- singleflight.Result{Val: v, Err: err, Shared: shared}
	}()
	select {
	case r := <-res:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*tapiEntry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stop cancels fetches in flight and waits for them; later fetches fail with 503.
func (c *tapiTokenCache) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cancelBG()
	c.wg.Wait()
}

// fetchOne makes the one issuer call (or n-token signature) for k and caches the result,
// unless an entry other than seen, and fresh, is already cached, or a failure window is
// open (a fetch that just ended failed). It remembers a failure, clears it on success,
// and returns errors as *tapiError.
func (c *tapiTokenCache) fetchOne(k tapiKey, trigger string, seen *tapiEntry) (*tapiEntry, error) {
	cur, ok := c.cache.Identity(k.identity)
	if !ok {
		return nil, tapiNotReady(k.identity)
	}
	now := c.clock.Now()
	if e, ok := c.lru.Peek(k); ok && e != seen && c.fresh(e, cur, now) {
		return e, nil
	}
	if f := c.failures.active(k, cur.Digest, now); f != nil {
		return nil, f.reply(now)
	}
	ctx, cancel := context.WithTimeout(c.bg, c.cfg.FetchTimeout)
	defer cancel()
	start := time.Now()
	tok, err := c.obtain(ctx, k, cur, now)
	if err == nil && (tok == nil || tok.Value == "" || !tok.Expiry.After(now)) {
		err = &tapiError{status: http.StatusBadGateway, msg: "the issuer returned an empty or expired token"}
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	c.metrics.fetch.WithLabelValues(k.kind.String(), trigger, outcome).Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, c.failed(k, cur, trigger, err)
	}
	c.failures.clear(k)
	e := &tapiEntry{tok: *tok, certDigest: cur.Digest, fetchedAt: now, bound: k.kind == tapiNToken}
	if k.kind == tapiAccess {
		e.scope, e.bound = tapiAccessTokenInfo(tok.Value, k.domain, k.roleList())
	}
	if old, ok := c.lru.Peek(k); ok {
		e.lastUsed.Store(old.lastUsed.Load())
	}
	c.lru.Add(k, e)
	c.log.Debug("token obtained", "identity", k.identity, "kind", k.kind.String(), "domain", k.domain,
		"roles", k.roles, "trigger", trigger, "expiry", tok.Expiry)
	return e, nil
}

// failed maps a fetch error to its answer, remembers it, and logs it (rate limited).
func (c *tapiTokenCache) failed(k tapiKey, cur *CredentialEntry, trigger string, err error) *tapiError {
	te := tapiFetchError(err, c.cfg.FetchTimeout)
	now := c.clock.Now()
	var retryIn time.Duration
	if f := c.failures.record(k, cur.Digest, te, now); f != nil {
		te = f.reply(now)
		retryIn = te.retryAfter
	}
	c.limited.Log(slog.LevelWarn, "token fetch failed", "identity", k.identity, "kind", k.kind.String(),
		"domain", k.domain, "roles", k.roles, "trigger", trigger, "status", te.status, "retry_in", retryIn, "error", err)
	return te
}

// obtain calls the fetcher, or signs an n-token. A panic in the fetcher becomes a 500
// for the callers rather than a crash of the agent (the fetch runs on its own goroutine,
// where no HTTP server recovers it).
func (c *tapiTokenCache) obtain(ctx context.Context, k tapiKey, cur *CredentialEntry, now time.Time) (tok *Token, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("token fetcher panicked", "identity", k.identity, "kind", k.kind.String(), "panic", fmt.Sprintf("%T", v))
			tok, err = nil, &tapiError{status: http.StatusInternalServerError, msg: "internal error"}
		}
	}()
	switch k.kind {
	case tapiAccess:
		return c.fetcher.AccessToken(ctx, k.identity, AccessTokenRequest{Domain: k.domain, Roles: k.roleList(), ExpiresIn: k.lifetime})
	case tapiRole:
		return c.fetcher.RoleToken(ctx, k.identity, RoleTokenRequest{Domain: k.domain, Roles: k.roleList(), MinExpiry: k.lifetime, MaxExpiry: k.lifetime})
	case tapiNToken:
		return c.signNToken(cur, now, k.lifetime)
	}
	return nil, fmt.Errorf("unknown token kind %d", k.kind)
}

// signNToken signs an n-token for the identity with its own key.
func (c *tapiTokenCache) signNToken(cur *CredentialEntry, now time.Time, lifetime time.Duration) (*Token, error) {
	d, s, _ := athenz.SplitPrincipal(cur.Identity)
	n := athenz.NToken{Domain: d, Name: s, KeyID: c.cfg.NTokenKeyVersion, Hostname: c.cfg.NTokenHostname,
		IssueTime: now, ExpiryTime: now.Add(lifetime)}
	v, err := n.Sign(cur.Key)
	if err != nil {
		return nil, &tapiError{status: http.StatusInternalServerError, msg: "could not sign the n-token with the identity's key: " + err.Error()}
	}
	return &Token{Value: v, Expiry: time.Unix(n.ExpiryTime.Unix(), 0)}, nil
}

// tapiAccessTokenInfo reads, without verifying (the token comes from the issuer over
// TLS), the scope an access token grants and whether it is bound to the client
// certificate. A token it cannot read is taken as bound, so that a rotation replaces it.
func tapiAccessTokenInfo(value, domain string, asked []string) (scope string, bound bool) {
	roles, bound := asked, true
	if j, err := athenz.ParseJWS(value, athenz.MaxAccessTokenLength, athenz.JWSAlgorithms()...); err == nil {
		var claims struct {
			Scp []string             `json:"scp"`
			Cnf *athenz.Confirmation `json:"cnf"`
		}
		if json.Unmarshal(j.Payload, &claims) == nil {
			bound = claims.Cnf != nil && claims.Cnf.X509Thumbprint != ""
			if len(claims.Scp) > 0 {
				roles = claims.Scp
			}
		}
	}
	parts := make([]string, len(roles))
	for i, r := range roles {
		parts[i] = athenz.JoinRoleName(domain, r)
	}
	return strings.Join(parts, " "), bound
}

// refreshLoop renews recently used tokens ahead of expiry every RefreshInterval until ctx
// is done.
func (c *tapiTokenCache) refreshLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(c.cfg.RefreshInterval):
			c.sweep(ctx)
		}
	}
}

// sweep renews the tokens that will reach renewAt before the next sweep, or whose
// certificate binding a rotation broke, if they were requested within IdleTimeout and
// their key is not inside a failure window (the backoff after a failed renewal). It
// drops tokens of identities that left the cache, and idle tokens that expired or lost
// their binding, and prunes the failures.
func (c *tapiTokenCache) sweep(ctx context.Context) {
	now := c.clock.Now()
	c.failures.prune(now, c.cfg.IdleTimeout, c.certDigest)
	due := make(map[tapiKey]*tapiEntry)
	for _, k := range c.lru.Keys() {
		e, ok := c.lru.Peek(k)
		if !ok {
			continue
		}
		cur, have := c.cache.Identity(k.identity)
		if !have {
			c.lru.Remove(k)
			continue
		}
		stale := !now.Before(e.tok.Expiry) || (e.bound && e.certDigest != cur.Digest)
		idle := now.Sub(time.Unix(0, e.lastUsed.Load())) > c.cfg.IdleTimeout
		switch {
		case idle && stale:
			c.lru.Remove(k)
		case idle:
		case c.failures.active(k, cur.Digest, now) != nil: // backing off: keep serving e
		case stale || !now.Before(e.renewAt(c.cfg.RenewBefore).Add(-c.cfg.RefreshInterval)):
			due[k] = e
		}
	}
	sem := make(chan struct{}, tapiBackgroundFetches)
	var wg sync.WaitGroup
	for k, e := range due {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			_, _ = c.fetch(ctx, k, tapiTriggerBackground, e)
		})
	}
	wg.Wait()
}

// certDigest returns the digest of the identity's current certificate, false when the
// identity is not in the cache.
func (c *tapiTokenCache) certDigest(identity string) (string, bool) {
	cur, ok := c.cache.Identity(identity)
	if !ok {
		return "", false
	}
	return cur.Digest, true
}
