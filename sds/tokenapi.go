package sds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Token API defaults (TokenAPIConfig documents them).
const (
	// DefaultTokenAPIAddress is where the token API listens when TokenAPIConfig.Address
	// is empty: loopback only.
	DefaultTokenAPIAddress = "127.0.0.1:4080"
	// DefaultTokenRenewBefore is how long before expiry a cached token stops being served
	// and is renewed.
	DefaultTokenRenewBefore = 5 * time.Minute
	// DefaultNTokenLifetime is the lifetime of the n-tokens the API signs (the Athenz
	// library default).
	DefaultNTokenLifetime = time.Hour
	// DefaultNTokenKeyVersion is the key id (k=) of the n-tokens the API signs (the Java
	// default).
	DefaultNTokenKeyVersion = "0"
	// DefaultMaxCachedTokens bounds the token cache, and separately its remembered
	// failures.
	DefaultMaxCachedTokens = 1024
	// DefaultTokenNegativeTTL is how long an issuer's refusal of a token is remembered.
	DefaultTokenNegativeTTL = 10 * time.Second
)

// TokenAPIConfig configures the token HTTP API. The zero value of every field is
// documented and usable: it serves on 127.0.0.1:4080, any identity in the cache.
type TokenAPIConfig struct {
	// Address is the TCP address Run listens on. Empty: DefaultTokenAPIAddress. It must
	// be a loopback address ("127.0.0.1:port", "[::1]:port", "localhost:port") unless
	// AllowNonLoopback is set: the API hands out the identity's credentials to whoever
	// can connect.
	Address string
	// DisableTCP makes Run serve the Unix socket only (SocketPath is then required).
	DisableTCP bool
	// AllowNonLoopback lets Address (and listeners given to Serve) be a non-loopback
	// address. Zero: refused at NewTokenAPI and Serve.
	AllowNonLoopback bool
	// SocketPath, when set, makes Run serve the API on this Unix socket too. Requests on
	// it are authorized by TokenAPIDeps.Authorizer when one is given.
	SocketPath string
	// SocketMode is set on the socket. Zero: 0660 (owner and group).
	SocketMode fs.FileMode
	// DefaultIdentity is the identity used when a request has no identity parameter.
	// Empty: the only identity the caller may use when there is exactly one, otherwise
	// the parameter is required.
	DefaultIdentity string
	// AllowedIdentities limits which identities TCP callers may use. Nil: any identity
	// in the cache (right for a sidecar, which holds only its workload's identity).
	AllowedIdentities []string
	// RenewBefore is how long before expiry a cached token stops being served: later
	// requests get a new one. It is capped at half the token's lifetime. Zero:
	// DefaultTokenRenewBefore (5 min).
	RenewBefore time.Duration
	// RefreshInterval is how often the background refresher looks for tokens to renew
	// ahead of RenewBefore (so that callers of recently used tokens never wait for the
	// issuer). A token whose renewal failed is retried only after its backoff (see
	// NegativeTTL), and served meanwhile until it expires. Zero: 15 s.
	RefreshInterval time.Duration
	// IdleTimeout is how long after its last request a token is still renewed in the
	// background; after that it is renewed on its next request. Zero: 1 h.
	IdleTimeout time.Duration
	// AccessTokenLifetime is the lifetime asked for when a request has no expires_in.
	// Zero: the issuer's default (1 h in ZTS).
	AccessTokenLifetime time.Duration
	// RoleTokenLifetime is the lifetime asked for when a role token request has no
	// expires_in. Zero: the issuer's default (2 h in ZTS).
	RoleTokenLifetime time.Duration
	// MaxCachedTokens bounds the token cache; the least recently used token is evicted.
	// It bounds the remembered failures (see NegativeTTL) separately, by the same number.
	// Zero: DefaultMaxCachedTokens (1024).
	MaxCachedTokens int
	// NegativeTTL is how long an issuer's refusal of a token (400, 401, 403, 404) is
	// remembered: requests for the same token within it get the same answer, with
	// Retry-After, without an issuer call. Transient failures (5xx, 429, timeout,
	// issuer unreachable) are remembered with a per-token backoff instead, 1 s doubling
	// to 30 s with jitter, which background renewal obeys too. A successful fetch, or a
	// new certificate for the identity, forgets both. Zero: DefaultTokenNegativeTTL
	// (10 s).
	NegativeTTL time.Duration
	// NTokenKeyVersion is the key id (k=) of the n-tokens signed with the identity's
	// key; a verifier looks the public key up under (domain, service, key id), so it must
	// be the id the key is registered under. Empty: DefaultNTokenKeyVersion ("0").
	NTokenKeyVersion string
	// NTokenLifetime is the lifetime of signed n-tokens. Zero: DefaultNTokenLifetime (1 h).
	NTokenLifetime time.Duration
	// NTokenHostname is written to n-tokens as h=. Empty: left out.
	NTokenHostname string
	// FetchTimeout bounds one issuer call. Zero: 10 s.
	FetchTimeout time.Duration
	// ShutdownGrace bounds the graceful shutdown once Run's context is done. Zero: 5 s.
	ShutdownGrace time.Duration
}

// TokenAPIDeps are the token API's collaborators.
type TokenAPIDeps struct {
	// Cache holds the identities whose tokens are served. Required.
	Cache *Cache
	// Fetcher obtains access and role tokens from the issuer. Required.
	Fetcher TokenFetcher
	// Authorizer, when set, decides which identities a caller on the Unix socket may
	// use, from its kernel credentials; the grant's first identity is its default. Nil:
	// socket callers are treated like TCP callers.
	Authorizer Authorizer
	// Logger receives the API's log (never a token). Nil: discarded.
	Logger *slog.Logger
	// Registerer receives the API's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// IssuerStatusError is implemented by errors of a TokenFetcher that carry the issuer's
// HTTP answer (for example a 403 because the identity holds none of the roles). The token
// API passes 400, 401, 403, 404 and 429 on to the caller with the issuer's message and
// answers 502 for the rest; a fetch error without a status means the issuer could not be
// reached and gives 502 too.
type IssuerStatusError interface {
	error
	// IssuerStatus is the HTTP status the issuer answered with.
	IssuerStatus() int
}

// IssuerError is a ready-made IssuerStatusError for TokenFetcher implementations.
type IssuerError struct {
	// Status is the issuer's HTTP status.
	Status int
	// Message is the issuer's error message; it is shown to the token API's caller.
	Message string
}

// Error formats the error as "issuer: 403: <message>".
func (e *IssuerError) Error() string { return fmt.Sprintf("issuer: %d: %s", e.Status, e.Message) }

// IssuerStatus returns Status.
func (e *IssuerError) IssuerStatus() int { return e.Status }

// ErrIdentityUnavailable may be wrapped by TokenFetcher errors when the identity has no
// usable certificate yet; the token API answers 503 with Retry-After.
var ErrIdentityUnavailable = errors.New("identity not available yet")

// TokenAPI is the agent's token HTTP API for applications, like Athenz's client sidecar:
// access tokens, role tokens, n-tokens and the service certificate of the agent's
// identities, over loopback HTTP or a Unix socket. Tokens are cached, renewed before
// expiry and fetched once for any number of concurrent callers; failed fetches are
// remembered, so that a retrying application does not load the issuer. It is safe for
// concurrent use; Run or Serve may be called once.
type TokenAPI struct {
	cfg     TokenAPIConfig
	cache   *Cache
	auth    Authorizer
	log     *slog.Logger
	limited *rateLimitedLog
	metrics *tokenAPIMetrics
	tokens  *tapiTokenCache
	handler http.Handler
	running atomic.Bool
}

// NewTokenAPI checks the configuration and returns the API. It does not listen; Run or
// Serve does.
func NewTokenAPI(cfg TokenAPIConfig, deps TokenAPIDeps) (*TokenAPI, error) {
	if deps.Cache == nil || deps.Fetcher == nil {
		return nil, errors.New("token API: Cache and Fetcher are required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("token API: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newTokenAPIMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("token API: metrics: %w", err)
	}
	t := &TokenAPI{cfg: cfg, cache: deps.Cache, auth: deps.Authorizer, log: log, limited: newRateLimitedLog(log, 10, 50), metrics: m}
	t.tokens, err = newTapiTokenCache(&t.cfg, deps.Cache, deps.Fetcher, log, t.limited, m)
	if err != nil {
		return nil, fmt.Errorf("token API: %w", err)
	}
	m.registerCacheSize(deps.Registerer, t.tokens.lru.Len, t.tokens.failures.Len)
	t.handler = t.routes()
	return t, nil
}

// withDefaults checks cfg and fills its zero values.
func (cfg TokenAPIConfig) withDefaults() (TokenAPIConfig, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultTokenAPIAddress
	}
	if cfg.DisableTCP && cfg.SocketPath == "" {
		return cfg, errors.New("DisableTCP needs a SocketPath")
	}
	if !cfg.DisableTCP && !cfg.AllowNonLoopback {
		if err := tapiCheckLoopback(cfg.Address); err != nil {
			return cfg, err
		}
	}
	if cfg.DefaultIdentity != "" {
		if err := validIdentityName(cfg.DefaultIdentity); err != nil {
			return cfg, fmt.Errorf("DefaultIdentity: %w", err)
		}
	}
	for _, id := range cfg.AllowedIdentities {
		if err := validIdentityName(id); err != nil {
			return cfg, fmt.Errorf("AllowedIdentities: %w", err)
		}
	}
	if cfg.DefaultIdentity != "" && cfg.AllowedIdentities != nil && !slices.Contains(cfg.AllowedIdentities, cfg.DefaultIdentity) {
		return cfg, errors.New("DefaultIdentity is not in AllowedIdentities")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RenewBefore", cfg.RenewBefore}, {"RefreshInterval", cfg.RefreshInterval}, {"IdleTimeout", cfg.IdleTimeout},
		{"AccessTokenLifetime", cfg.AccessTokenLifetime}, {"RoleTokenLifetime", cfg.RoleTokenLifetime},
		{"NTokenLifetime", cfg.NTokenLifetime}, {"FetchTimeout", cfg.FetchTimeout}, {"ShutdownGrace", cfg.ShutdownGrace},
		{"NegativeTTL", cfg.NegativeTTL}} {
		if d.v < 0 {
			return cfg, fmt.Errorf("%s must not be negative", d.name)
		}
	}
	if cfg.MaxCachedTokens < 0 {
		return cfg, errors.New("MaxCachedTokens must not be negative")
	}
	if cfg.AccessTokenLifetime > tapiMaxLifetime || cfg.RoleTokenLifetime > tapiMaxLifetime || cfg.NTokenLifetime > tapiMaxLifetime {
		return cfg, fmt.Errorf("token lifetimes must not exceed %s", tapiMaxLifetime)
	}
	cfg.SocketMode = tapiMode(cfg.SocketMode, 0o660)
	cfg.RenewBefore = tapiDuration(cfg.RenewBefore, DefaultTokenRenewBefore)
	cfg.RefreshInterval = tapiDuration(cfg.RefreshInterval, 15*time.Second)
	cfg.IdleTimeout = tapiDuration(cfg.IdleTimeout, time.Hour)
	cfg.NTokenLifetime = tapiDuration(cfg.NTokenLifetime, DefaultNTokenLifetime)
	cfg.FetchTimeout = tapiDuration(cfg.FetchTimeout, 10*time.Second)
	cfg.ShutdownGrace = tapiDuration(cfg.ShutdownGrace, 5*time.Second)
	cfg.NegativeTTL = tapiDuration(cfg.NegativeTTL, DefaultTokenNegativeTTL)
	if cfg.MaxCachedTokens == 0 {
		cfg.MaxCachedTokens = DefaultMaxCachedTokens
	}
	if cfg.NTokenKeyVersion == "" {
		cfg.NTokenKeyVersion = DefaultNTokenKeyVersion
	}
	return cfg, tapiCheckNTokenFields(cfg.NTokenKeyVersion, cfg.NTokenHostname)
}

// tapiCheckNTokenFields signs a throwaway n-token so that a key version or host name the
// n-token format cannot carry is a configuration error, not a failure on every request.
func tapiCheckNTokenFields(keyVersion, hostname string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	n := athenz.NToken{Domain: "check", Name: "check", KeyID: keyVersion, Hostname: hostname, IssueTime: now, ExpiryTime: now.Add(time.Minute)}
	if _, err := n.Sign(key); err != nil {
		return fmt.Errorf("NTokenKeyVersion %.64q or NTokenHostname %.64q: %w", keyVersion, hostname, err)
	}
	return nil
}

func tapiDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func tapiMode(v, def fs.FileMode) fs.FileMode {
	if v == 0 {
		return def
	}
	return v
}

// tapiCheckLoopback refuses a host:port whose host is not a loopback IP or
// "localhost". An empty host means every interface, which is refused too.
func tapiCheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("address %q is not a loopback address; the token API hands out credentials to anyone who can connect (set AllowNonLoopback to serve it anyway)", addr)
}

// checkListener applies the loopback rule to a listener given to Serve.
func (t *TokenAPI) checkListener(l net.Listener) error {
	if t.cfg.AllowNonLoopback {
		return nil
	}
	switch a := l.Addr().(type) {
	case *net.UnixAddr:
		return nil
	case *net.TCPAddr:
		if a.IP.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("token API: listener address %s is not loopback or a Unix socket (set AllowNonLoopback to serve it anyway)", l.Addr())
}

// Handler returns the API's HTTP handler, for embedding in another server. Tokens are
// served and cached without Run, but they are renewed in the background only while Run
// or Serve is running, and only Run and Serve record the peer credentials that
// TokenAPIDeps.Authorizer needs (other servers' Unix-socket callers are treated like TCP
// callers).
func (t *TokenAPI) Handler() http.Handler { return t.handler }

// Run listens on the configured TCP address and Unix socket and serves until ctx is done,
// then shuts down gracefully (in-flight requests get ShutdownGrace).
func (t *TokenAPI) Run(ctx context.Context) error {
	var lis []net.Listener
	closeAll := func() {
		for _, l := range lis {
			l.Close()
		}
	}
	if !t.cfg.DisableTCP {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", t.cfg.Address)
		if err != nil {
			return fmt.Errorf("token API: listen: %w", err)
		}
		lis = append(lis, l)
	}
	if t.cfg.SocketPath != "" {
		l, err := listenUnix(t.cfg.SocketPath, DefaultDirMode, t.cfg.SocketMode)
		if err != nil {
			closeAll()
			return fmt.Errorf("token API: %w", err)
		}
		lis = append(lis, l)
	}
	for _, l := range lis {
		if err := t.checkListener(l); err != nil {
			closeAll()
			return err
		}
	}
	return t.serve(ctx, lis)
}

// Serve serves the API on l until ctx is done, then shuts down gracefully. It takes
// ownership of l. l must be a loopback TCP or Unix listener unless AllowNonLoopback is
// set.
func (t *TokenAPI) Serve(ctx context.Context, l net.Listener) error {
	if err := t.checkListener(l); err != nil {
		l.Close()
		return err
	}
	return t.serve(ctx, []net.Listener{l})
}

// serve runs the HTTP server on every listener and the background refresher.
func (t *TokenAPI) serve(ctx context.Context, lis []net.Listener) error {
	if !t.running.CompareAndSwap(false, true) {
		for _, l := range lis {
			l.Close()
		}
		return errors.New("token API: already running")
	}
	srv := t.newHTTPServer()
	errc := make(chan error, len(lis))
	for _, l := range lis {
		t.log.Info("token API listening", "address", l.Addr().String())
		go func() { errc <- srv.Serve(l) }()
	}
	rctx, stopRefresh := context.WithCancel(context.Background())
	var refresher sync.WaitGroup
	refresher.Go(func() { t.tokens.refreshLoop(rctx) })

	var first error
	pending := len(lis)
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
	}
	sctx, cancel := context.WithTimeout(context.Background(), t.cfg.ShutdownGrace)
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	cancel()
	for ; pending > 0; pending-- {
		<-errc
	}
	stopRefresh()
	refresher.Wait()
	t.tokens.stop()
	if first != nil && !errors.Is(first, http.ErrServerClosed) {
		return fmt.Errorf("token API: serve: %w", first)
	}
	return nil
}

// newHTTPServer bounds what a client can make the server hold: header size and every
// phase of a request. Writes wait at most for one issuer fetch.
func (t *TokenAPI) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           t.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      t.cfg.FetchTimeout + 10*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    tapiMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(t.log.Handler(), slog.LevelDebug),
		ConnContext:       tapiConnContext,
	}
}
