package issuer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// BasePath is the prefix of every ZTS API route.
const BasePath = "/zts/v1"

// Deps are the issuer's collaborators. The zero value works: slog.Default(), no metrics
// registry, a store opened from the config, the wall clock.
type Deps struct {
	// Logger receives the server log and the audit lines (msg "issued" and "refused").
	Logger *slog.Logger
	// Registry receives the issuer's metrics. Nil: metrics are kept but not exported.
	Registry prometheus.Registerer
	// Gatherer serves /metrics on the metrics listener. Nil: prometheus.DefaultGatherer
	// when Registry is nil, else Registry when it is also a Gatherer.
	Gatherer prometheus.Gatherer
	// Store, when set, is used instead of opening Config.Store; the caller closes it.
	Store store.Store
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Server is a running issuer: HTTPS ZTS API, domain reloads, store pruning. Build it with
// New, run it with Run (or Serve), release it with Close.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	ca        *ca.CA
	store     store.Store
	ownStore  bool
	ztsKey    *signingKey
	zmsKey    *signingKey
	bundleKey *signingKey
	domains   *domainSource
	providers map[string]*provider
	metrics   *metrics
	gatherer  prometheus.Gatherer
	tls       *tls.Config
	handler   http.Handler
	started   time.Time
	signer    string // x509CertificateSigner / caCertBundle: chain then roots, PEM
	ntokens   ntokenCache
	istio     *istioCA // nil: the Istio CA API is off

	closeOnce sync.Once
}

// New validates cfg, loads (or creates, where the config says so) the CA and keys, opens
// the store, loads the domains and builds the routes. Nothing listens yet.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	orig := cfg
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: deps.Logger, now: deps.Now, store: deps.Store}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now()
	var err error
	if s.metrics, err = newMetrics(deps.Registry); err != nil {
		return nil, fmt.Errorf("issuer metrics: %w", err)
	}
	s.gatherer = deps.Gatherer
	if s.gatherer == nil {
		if g, ok := deps.Registry.(prometheus.Gatherer); ok {
			s.gatherer = g
		} else {
			s.gatherer = prometheus.DefaultGatherer
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("issuer data directory: %w", err)
	}
	if s.ca, err = loadCA(cfg, s.now); err != nil {
		return nil, err
	}
	for _, w := range s.ca.Warnings() {
		s.log.Warn("CA warning", "warning", w)
	}
	s.signer = string(s.ca.ChainPEM()) + string(s.ca.RootsPEM())
	if s.ztsKey, err = loadOrCreateKey(cfg.Keys.ZTS.File, cfg.Keys.ZTS.ID, orig.Keys.ZTS.File == "", ""); err != nil {
		return nil, fmt.Errorf("ZTS signing key: %w", err)
	}
	if s.zmsKey, err = loadOrCreateKey(cfg.Keys.ZMS.File, cfg.Keys.ZMS.ID, orig.Keys.ZMS.File == "", ""); err != nil {
		return nil, fmt.Errorf("ZMS signing key: %w", err)
	}
	if !cfg.Bundle.Disabled && !cfg.Bundle.Unsigned {
		pub := ""
		if orig.Keys.Bundle.File == "" {
			pub = pubPathFor(cfg.Keys.Bundle.File)
		}
		if s.bundleKey, err = loadOrCreateKey(cfg.Keys.Bundle.File, cfg.Keys.Bundle.ID, orig.Keys.Bundle.File == "", pub); err != nil {
			return nil, fmt.Errorf("bundle signing key: %w", err)
		}
	}
	if s.store == nil {
		st, err := OpenStore(context.Background(), orig, s.log)
		if err != nil {
			return nil, err
		}
		s.store, s.ownStore = st, true
	}
	if err := s.finishNew(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// finishNew does the parts of New that need the store.
func (s *Server) finishNew() error {
	var build func(*snapshot) error
	if !s.cfg.Bundle.Disabled {
		build = func(snap *snapshot) error { return buildBundle(snap, s.bundleKey, s.cfg.Bundle.Scope) }
	}
	s.domains = newDomainSource(s.cfg.Domains.Dir, s.log, s.now, build)
	if _, err := s.domains.load(true); err != nil {
		return fmt.Errorf("load domains from %s: %w", domainsDirAbs(s.cfg.Domains.Dir), err)
	}
	s.metrics.domains.Set(float64(len(s.domains.current().domains)))
	var err error
	if s.providers, err = s.buildProviders(); err != nil {
		return err
	}
	if s.tls, err = s.tlsConfig(); err != nil {
		return err
	}
	if s.cfg.Istio.enabled() {
		if s.istio, err = newIstioCA(s); err != nil {
			return err
		}
	}
	s.handler = s.routes()
	return nil
}

// loadCA loads the configured CA, creating it first when ca.create asks.
func loadCA(cfg Config, now func() time.Time) (*ca.CA, error) {
	var cc ca.Config
	if cfg.CA.KeyFile != "" {
		cc = ca.Config{KeyFile: cfg.CA.KeyFile, CertFile: cfg.CA.CertFile, ChainFile: cfg.CA.ChainFile, RootsFile: cfg.CA.RootsFile}
	} else {
		cc = ca.DirConfig(cfg.CA.Dir)
		if _, err := os.Stat(cc.CertFile); errors.Is(err, os.ErrNotExist) {
			if !cfg.CA.Create {
				return nil, fmt.Errorf("no CA in %s: create one with 'athenz-mesh issuer ca init --dir %s', set ca.create: true for a development CA, or give ca.key_file and ca.cert_file", cfg.CA.Dir, cfg.CA.Dir)
			}
			if err := ca.Init(cfg.CA.Dir, ca.InitOptions{Now: now}); err != nil {
				return nil, fmt.Errorf("create CA: %w", err)
			}
			cc = ca.DirConfig(cfg.CA.Dir)
		}
	}
	cc.AllowGroupReadableKey = cfg.CA.AllowGroupReadableKey
	cc.Backdate = cfg.CA.Backdate
	cc.DefaultValidity = cfg.Certificates.DefaultValidity
	cc.MaxValidity = cfg.Certificates.MaxValidity
	cc.Now = now
	authority, err := ca.Load(cc)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	return authority, nil
}

// Handler returns the ZTS API handler (with /healthz and /readyz), for in-process use
// and tests; Serve wraps it in TLS.
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig returns a copy of the server's TLS configuration.
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// CA returns the issuer's certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

// Run listens on the configured addresses and serves until ctx is done, then shuts down
// gracefully. It returns nil after a clean stop.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen.Address)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen.Address, err)
	}
	var mln, iln net.Listener
	if m := s.cfg.Listen.Metrics; m != ListenOff {
		if mln, err = net.Listen("tcp", m); err != nil {
			ln.Close()
			return fmt.Errorf("listen %s (metrics): %w", m, err)
		}
	}
	if s.istio != nil {
		if iln, err = net.Listen("tcp", s.cfg.Istio.Listen); err != nil {
			ln.Close()
			if mln != nil {
				mln.Close()
			}
			return fmt.Errorf("listen %s (istio CA API): %w", s.cfg.Istio.Listen, err)
		}
	}
	return s.serve(ctx, ln, mln, iln)
}

// Serve serves the HTTPS API on ln (a plain TCP listener; Serve adds TLS) until ctx is
// done, running the domain reloads and store pruning alongside. Tests use it with a
// listener on 127.0.0.1:0.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error { return s.serve(ctx, ln, nil, nil) }

// ServeIstio is Serve plus Istio's CA API on istioLn (a plain TCP listener; TLS is added).
// The configuration must enable it (istio.listen), or ServeIstio fails at once.
func (s *Server) ServeIstio(ctx context.Context, ln, istioLn net.Listener) error {
	if s.istio == nil {
		return errors.New("the Istio CA API is not configured (istio.listen)")
	}
	return s.serve(ctx, ln, nil, istioLn)
}

func (s *Server) serve(ctx context.Context, ln, metricsLn, istioLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		s.domains.run(ctx, s.cfg.Domains.PollInterval, func(ok bool) {
			if ok {
				s.metrics.reloads.WithLabelValues("ok").Inc()
				s.metrics.domains.Set(float64(len(s.domains.current().domains)))
			} else {
				s.metrics.reloads.WithLabelValues("error").Inc()
			}
		})
	})
	wg.Go(func() { s.pruneLoop(ctx) })
	api := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	servers := []*http.Server{api}
	errs := make(chan error, 3)
	go func() { errs <- api.Serve(tls.NewListener(ln, s.tls)) }()
	if metricsLn != nil {
		ms := &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, ms)
		go func() { errs <- ms.Serve(metricsLn) }()
	}
	if istioLn != nil {
		wg.Go(func() {
			if err := s.istio.serve(ctx, istioLn, s.cfg.Listen.ShutdownGrace); err != nil {
				errs <- err
			}
		})
	}
	s.log.Info("issuer listening", "address", ln.Addr().String(), "issuer", s.cfg.Tokens.Issuer,
		"domains", len(s.domains.current().domains), "providers", len(s.providers))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("serve: %w", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), s.cfg.Listen.ShutdownGrace)
	defer scancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	wg.Wait()
	return err
}

// pruneLoop deletes expired records every PruneInterval.
func (s *Server) pruneLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Store.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := s.store.Prune(ctx, s.now())
		if err != nil {
			s.log.Error("store prune failed", "error", err)
			continue
		}
		s.log.Debug("store pruned", "single_use", p.SingleUse, "join_tokens", p.JoinTokens, "certificates", p.Certificates, "instances", p.Instances)
	}
}

// metricsHandler serves /metrics, /healthz and /readyz.
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

// healthz answers 200 while the process serves.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 once domain data is loaded, which New guarantees. A failing reload
// keeps the last good data in force, so it is reported in the body, not as unready.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	msg := "ok " + strconv.Itoa(len(s.domains.current().domains)) + " domains\n"
	if e := s.domains.lastErr.Load(); e != nil {
		msg += "last domain reload failed, serving the last good data: " + *e + "\n"
	}
	_, _ = w.Write([]byte(msg))
}

// Close releases the store when New opened it. The server must not be used afterwards.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.ownStore && s.store != nil {
			err = s.store.Close()
		}
	})
	return err
}

// Issuer returns the access token issuer name (tokens.issuer, or its default).
func (s *Server) Issuer() string { return s.cfg.Tokens.Issuer }
