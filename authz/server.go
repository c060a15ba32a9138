package authz

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Deps are the server's collaborators. Every field is optional.
type Deps struct {
	// Logger receives the server's own log (not decision logs). Nil: discarded.
	Logger *slog.Logger
	// Registry receives the metrics and is served on /metrics. Nil: a new registry.
	Registry *prometheus.Registry
	// Now is the clock decisions and the cache use. Nil: time.Now.
	Now func() time.Time
	// HTTPClient fetches the bundle from a URL. Nil: a client trusting Bundle.CAFile (or
	// the system roots).
	HTTPClient *http.Client
	// NewCallers builds the CallerSource for a request mapping; the server calls it once
	// at start and again when a new bundle changes the mapping in force. Nil: an
	// Authenticator built once from Config.Credentials (with this clock and logger), kept
	// fresh by Run, and re-targeted with WithMapping.
	NewCallers func(cfg CredentialsConfig, m *policy.Mapping) (CallerSource, error)
}

// Server is the ext_authz server: the bundle store, the gRPC and HTTP check services and
// the metrics and health endpoints, run together by Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	store   *Store
	checker *checker
	health  *health.Server
	grpc    *grpc.Server
	dlog    *decisionLog
	// auth is the Authenticator built from the config, nil when Deps.NewCallers replaced
	// it; Run keeps its JWKS fresh.
	auth *Authenticator

	grpcLis, sockLis, httpLis, metricsLis net.Listener
	httpSrv, metricsSrv                   *http.Server

	runOnce   sync.Once
	closeOnce sync.Once
}

// New validates cfg, reads its keys, opens the decision log and binds every listener, so
// that configuration and port problems surface before Run. A Server that is never Run
// must be Closed.
func New(cfg Config, deps Deps) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: deps.Logger, reg: deps.Registry}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	keys, err := readVerificationKeys(cfg.Bundle.VerificationKeys)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		s.log.Warn("no bundle verification keys configured: policy bundles are not signature-checked")
	}
	client := deps.HTTPClient
	if client == nil && cfg.Bundle.URL != "" {
		if client, err = bundleClient(cfg.Bundle.CAFile); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	// Build the callers once now, so that credential configuration problems (an
	// unreadable JWKS or key file) stop the start instead of every bundle load.
	baseMapping := cfg.Decision.Mapping.Mapping()
	callersFor := func(m *policy.Mapping) (CallerSource, error) { return deps.NewCallers(cfg.Credentials, m) }
	if deps.NewCallers == nil {
		opts, err := jwksClientOption(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithClock(now), WithLogger(s.log))
		if s.auth, err = NewAuthenticator(cfg.Credentials, baseMapping, opts...); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		// The Authenticator reads only the peer and the two token headers, so its
		// answers for token-less requests can be remembered per peer.
		callersFor = func(m *policy.Mapping) (CallerSource, error) {
			return newPeerCachingCallers(s.auth.WithMapping(m)), nil
		}
	}
	baseCallers, err := callersFor(baseMapping)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}

	var st *Store
	m, err := newMetrics(s.reg, func() float64 {
		if snap := st.Current(); snap != nil {
			return now().Sub(snap.LoadedAt).Seconds()
		}
		return 0
	})
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	var cache *decisionCache
	if !cfg.Decision.Cache.Disabled {
		size, ttl := cfg.Decision.Cache.Size, cfg.Decision.Cache.MaxTTL
		if size == 0 {
			size = DefaultCacheSize
		}
		if ttl == 0 {
			ttl = DefaultCacheMaxTTL
		}
		if cache, err = newDecisionCache(size, ttl); err != nil {
			return nil, err
		}
	}
	prepare := func(b *policy.Bundle, snap, prev *Snapshot) error {
		mapping := baseMapping
		if mapping == nil {
			mapping = b.Compiled.Mapping
		}
		snap.Mapping = mapping
		fromMapping, fromCallers := baseMapping, baseCallers
		if prev != nil {
			fromMapping, fromCallers = prev.Mapping, prev.Callers
		}
		if reflect.DeepEqual(mapping, fromMapping) {
			snap.Callers = fromCallers
			return nil
		}
		callers, err := callersFor(mapping)
		if err != nil {
			return fmt.Errorf("credentials for the bundle's mapping: %w", err)
		}
		snap.Callers = callers
		return nil
	}
	st = newStore(storeOptions{
		cfg: cfg.Bundle, keys: keys, client: client, now: now, log: s.log, metrics: m, prepare: prepare,
		onSwap: func(*Snapshot) {
			if cache != nil {
				cache.purge()
			}
		},
	})
	s.store = st
	if s.dlog, err = openDecisionLog(cfg.DecisionLog); err != nil {
		return nil, err
	}
	s.checker = &checker{
		cfg: resolveDecision(cfg.Decision), store: st, cache: cache, metrics: m, dlog: s.dlog,
		log: s.log, now: now, ids: newIDGen(),
	}
	s.buildGRPC()
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// Preflight checks cfg as New would, without binding a listener or opening the decision
// log: it validates the config, reads the bundle verification keys and the bundle CA, and
// builds the Authenticator (reading its key files and fetching a JWKS URL once). It is
// `athenz-mesh authz --check-config`, safe to run beside a running server.
func Preflight(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := readVerificationKeys(cfg.Bundle.VerificationKeys); err != nil {
		return err
	}
	if cfg.Bundle.CAFile != "" {
		if _, err := bundleClient(cfg.Bundle.CAFile); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	opts, err := jwksClientOption(cfg)
	if err != nil {
		return err
	}
	if _, err := NewAuthenticator(cfg.Credentials, cfg.Decision.Mapping.Mapping(), opts...); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// jwksClientOption is the option that makes the Authenticator fetch an https JWKS URL
// trusting credentials.access_token.ca_file, or bundle.ca_file when that is empty; none
// when neither is set (the system roots) or there is no JWKS URL.
func jwksClientOption(cfg Config) ([]AuthenticatorOption, error) {
	caFile := cmp.Or(cfg.Credentials.AccessToken.CAFile, cfg.Bundle.CAFile)
	if caFile == "" || cfg.Credentials.AccessToken.JWKSURL == "" {
		return nil, nil
	}
	client, err := bundleClient(caFile)
	if err != nil {
		return nil, fmt.Errorf("credentials.access_token: %w", err)
	}
	return []AuthenticatorOption{WithHTTPClient(client)}, nil
}

// readVerificationKeys reads the bundle verification keys by key id.
func readVerificationKeys(vks []VerificationKey) (map[string]crypto.PublicKey, error) {
	keys := make(map[string]crypto.PublicKey, len(vks))
	for _, k := range vks {
		pemBytes, err := os.ReadFile(k.File)
		if err != nil {
			return nil, fmt.Errorf("bundle verification key %q: %w", k.keyID(), err)
		}
		pub, err := policy.ParseVerificationKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("bundle verification key %q (%s): %w", k.keyID(), k.File, err)
		}
		keys[k.keyID()] = pub
	}
	return keys, nil
}

// bundleClient is the HTTP client for the bundle URL and the JWKS URL: it trusts the
// certificates in caFile, or the system roots when caFile is empty.
func bundleClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

func (s *Server) buildGRPC() {
	maxRecv := s.cfg.Listen.MaxRecvBytes
	if maxRecv == 0 {
		maxRecv = DefaultMaxRecvBytes
	}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRecv),
		// Envoy may ping idle connections (connection_keepalive); allow it rather than
		// answering with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(newWireCodec()),
	)
	s.grpc.RegisterService(&authorizationDesc, &grpcService{c: s.checker})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(AuthorizationService, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
}

// listen binds every configured listener.
func (s *Server) listen() error {
	l := s.cfg.Listen
	var err error
	grpcAddr := l.GRPC
	if grpcAddr == "" {
		grpcAddr = DefaultGRPCAddr
	}
	if grpcAddr != ListenOff {
		if s.grpcLis, err = net.Listen("tcp", grpcAddr); err != nil {
			return fmt.Errorf("listen grpc: %w", err)
		}
	}
	if l.GRPCSocket != "" {
		if s.sockLis, err = listenUnix(l.GRPCSocket, l.GRPCSocketMode); err != nil {
			return err
		}
	}
	if l.HTTP != "" {
		if s.httpLis, err = net.Listen("tcp", l.HTTP); err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
		s.httpSrv = &http.Server{
			Handler:           &httpService{c: s.checker, prefix: s.cfg.HTTP.PathPrefix, trustXFCC: s.cfg.HTTP.TrustXFCC},
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       5 * time.Minute,
			MaxHeaderBytes:    s.checker.cfg.maxHeaderBytes + 4096,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	metricsAddr := l.Metrics
	if metricsAddr == "" {
		metricsAddr = DefaultMetricsAddr
	}
	if metricsAddr != ListenOff {
		if s.metricsLis, err = net.Listen("tcp", metricsAddr); err != nil {
			return fmt.Errorf("listen metrics: %w", err)
		}
		s.metricsSrv = &http.Server{
			Handler:           s.metricsHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	return nil
}

// listenUnix listens on a Unix socket at path with the given mode, replacing a stale
// socket file but nothing else.
func listenUnix(path, modeStr string) (net.Listener, error) {
	mode := os.FileMode(DefaultSocketMode)
	if modeStr != "" {
		var err error
		if mode, err = parseSocketMode(modeStr); err != nil {
			return nil, err
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen grpc_socket: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen grpc_socket: remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen grpc_socket: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen grpc_socket: chmod: %w", err)
	}
	return lis, nil
}

// metricsHandler serves /metrics, /healthz and /readyz.
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	status := func(w http.ResponseWriter, code int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(s.Health())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { status(w, http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.store.Current() == nil {
			status(w, http.StatusServiceUnavailable)
			return
		}
		status(w, http.StatusOK)
	})
	return mux
}

// Health is the /healthz and /readyz document.
type Health struct {
	// Ready is true once a policy bundle is in force.
	Ready bool `json:"ready"`
	// Bundle is the bundle store's status, with the last refused bundle's error.
	Bundle StoreStatus `json:"bundle"`
	// AccessTokenKeys is the JWKS status, when access tokens are verified with one.
	AccessTokenKeys *JWKSStatus `json:"access_token_keys,omitempty"`
}

// Health reports the server's health.
func (s *Server) Health() Health {
	h := Health{Bundle: s.store.Status()}
	h.Ready = h.Bundle.Ready
	if s.auth != nil && s.auth.JWKS() != nil {
		st := s.auth.JWKS().Status()
		h.AccessTokenKeys = &st
	}
	return h
}

// GRPCAddr is the bound gRPC TCP address, nil when off.
func (s *Server) GRPCAddr() net.Addr { return addrOf(s.grpcLis) }

// HTTPAddr is the bound HTTP ext_authz address, nil when off.
func (s *Server) HTTPAddr() net.Addr { return addrOf(s.httpLis) }

// MetricsAddr is the bound metrics and health address, nil when off.
func (s *Server) MetricsAddr() net.Addr { return addrOf(s.metricsLis) }

// Store is the bundle store, for status and tests.
func (s *Server) Store() *Store { return s.store }

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Run serves until ctx is done, then stops gracefully: health turns NOT_SERVING, new
// checks are refused, in-flight ones get Listen.ShutdownGrace to finish. It returns the
// first error of any part (nil on a clean stop) and may be called once.
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("authz: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

func (s *Server) run(ctx context.Context) error {
	defer s.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.store.Run(gctx) })
	if s.auth != nil {
		g.Go(func() error { return s.auth.Run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-s.store.Ready():
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.health.SetServingStatus(AuthorizationService, healthpb.HealthCheckResponse_SERVING)
			s.log.Info("ready: serving decisions", "revision", s.store.Current().Revision)
		case <-gctx.Done():
		}
		return nil
	})
	for _, lis := range []net.Listener{s.grpcLis, s.sockLis} {
		if lis != nil {
			g.Go(func() error {
				if err := s.grpc.Serve(lis); err != nil {
					return fmt.Errorf("serve grpc on %s: %w", lis.Addr(), err)
				}
				return nil
			})
		}
	}
	for _, hs := range []struct {
		srv *http.Server
		lis net.Listener
	}{{s.httpSrv, s.httpLis}, {s.metricsSrv, s.metricsLis}} {
		if hs.lis != nil {
			g.Go(func() error {
				if err := hs.srv.Serve(hs.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("serve http on %s: %w", hs.lis.Addr(), err)
				}
				return nil
			})
		}
	}
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown()
		return nil
	})
	s.log.Info("authz server started", "grpc", addrString(s.grpcLis), "grpc_socket", addrString(s.sockLis),
		"http", addrString(s.httpLis), "metrics", addrString(s.metricsLis))
	return g.Wait()
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// shutdown stops the servers, gracefully up to the grace period.
func (s *Server) shutdown() {
	grace := s.cfg.Listen.ShutdownGrace
	if grace == 0 {
		grace = DefaultShutdownGrace
	}
	s.health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
		}
	})
	for _, srv := range []*http.Server{s.httpSrv, s.metricsSrv} {
		if srv != nil {
			wg.Go(func() {
				if err := srv.Shutdown(ctx); err != nil {
					srv.Close()
				}
			})
		}
	}
	wg.Wait()
	s.log.Info("authz server stopped")
}

// Close releases the listeners and the decision log. Run calls it on return.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		if s.grpc != nil {
			s.grpc.Stop()
		}
		for _, l := range []net.Listener{s.grpcLis, s.sockLis, s.httpLis, s.metricsLis} {
			if l != nil {
				if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					errs = append(errs, err)
				}
			}
		}
		if s.sockLis != nil {
			_ = os.Remove(s.cfg.Listen.GRPCSocket)
		}
		errs = append(errs, s.dlog.close())
	})
	return errors.Join(errs...)
}

// NewLogger returns the server log for cfg, writing to w.
func NewLogger(cfg LogConfig, w io.Writer) (*slog.Logger, error) {
	level, err := parseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q, want debug, info, warn or error", s)
}
