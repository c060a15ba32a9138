package sds

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"

	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Health service names the server reports, besides "" (the whole server).
const (
	HealthSDS         = "envoy.service.secret.v3.SecretDiscoveryService"
	HealthWorkloadAPI = "SpiffeWorkloadAPI"
)

// Config is the agent server's configuration. The zero value of each field is documented
// and usable, except SocketPath.
type Config struct {
	// SocketPath is the Unix socket to serve on, for example IstioSocketPath or SIA's
	// sds_uds_path. Required.
	SocketPath string
	// SocketMode is set on the socket after it is bound. Zero: DefaultSocketMode (0666):
	// any local user may connect, and the Authorizer decides what each gets. Use 0660 or
	// 0600 to let the file system refuse connections too.
	SocketMode fs.FileMode
	// DirMode is the mode of parent directories the server creates; existing ones are
	// not changed. Zero: DefaultDirMode (0755).
	DirMode fs.FileMode
	// Validation says how validation contexts are written. Zero: ValidationAuto.
	Validation ValidationMode
	// DisableWorkloadAPI turns off the SPIFFE Workload API on the socket. Zero: served.
	DisableWorkloadAPI bool
	// ReadyIdentities must all be in the cache, with the trust bundle, before the gRPC
	// health service reports SERVING. Nil: the bundle alone (node mode, where identities
	// follow the pods).
	ReadyIdentities []string
	// ShutdownGrace bounds the graceful stop once Run's context is done; open streams
	// are ended at once (clients reconnect to the next agent) and in-flight calls get
	// this long. Zero: 5 s.
	ShutdownGrace time.Duration
}

// Deps are the server's collaborators.
type Deps struct {
	// Cache holds what is served. Required.
	Cache *Cache
	// Authorizer says which identities each peer may receive. Required.
	Authorizer Authorizer
	// JWTSigner mints JWT-SVIDs for the Workload API. Nil: FetchJWTSVID answers
	// Unimplemented.
	JWTSigner JWTSigner
	// Logger receives the server's log. Nil: discarded.
	Logger *slog.Logger
	// Registerer receives the server's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Server serves SDS v3, the SPIFFE Workload API and gRPC health on a Unix socket, with
// every connection identified by its peer credentials.
type Server struct {
	cfg    Config
	cache  *Cache
	log    *slog.Logger
	lis    *net.UnixListener
	grpc   *grpc.Server
	health *health.Server
	sds    *sdsService

	stopping  chan struct{}
	stopOnce  sync.Once
	runOnce   sync.Once
	closeOnce sync.Once
}

// New checks the configuration and binds the socket, so that path and permission
// problems surface before Run and clients may connect as soon as New returns (they are
// answered once Run starts). A Server that is never Run must be Closed.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Cache == nil || deps.Authorizer == nil {
		return nil, errors.New("sds server: Cache and Authorizer are required")
	}
	if cfg.Validation < ValidationAuto || cfg.Validation > ValidationSPIFFE {
		return nil, errors.New("sds server: unknown validation mode " + cfg.Validation.String())
	}
	for _, id := range cfg.ReadyIdentities {
		if err := validIdentityName(id); err != nil {
			return nil, err
		}
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = DefaultSocketMode
	}
	if cfg.DirMode == 0 {
		cfg.DirMode = DefaultDirMode
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	lis, err := listenUnix(cfg.SocketPath, cfg.DirMode, cfg.SocketMode)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, cache: deps.Cache, log: log, lis: lis, stopping: make(chan struct{}), health: health.NewServer()}
	s.sds = &sdsService{
		cache:    deps.Cache,
		auth:     deps.Authorizer,
		mode:     cfg.Validation,
		log:      log,
		limited:  newRateLimitedLog(log, 10, 50),
		metrics:  m,
		stopping: s.stopping,
		retryMin: 250 * time.Millisecond,
		retryMax: 30 * time.Second,
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(PeerCredentials()),
		// Envoy may send HTTP/2 keepalive pings on idle SDS streams; do not GOAWAY it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	secretv3.RegisterSecretDiscoveryServiceServer(s.grpc, s.sds)
	if !cfg.DisableWorkloadAPI {
		workload.RegisterSpiffeWorkloadAPIServer(s.grpc, &workloadService{sds: s.sds, signer: deps.JWTSigner})
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return s, nil
}

// SocketPath returns the path the server listens on.
func (s *Server) SocketPath() string { return s.cfg.SocketPath }

// Run serves until ctx is done, then stops gracefully: health turns NOT_SERVING, streams
// end, in-flight calls get Config.ShutdownGrace, and the socket file is removed. It
// returns nil after a stop caused by ctx, the serving error otherwise. Run may be called
// once.
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("sds server: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

func (s *Server) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.trackReadiness(ctx)
	}()
	serveErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		serveErr <- s.grpc.Serve(s.lis)
	}()
	s.log.Info("agent serving", "socket", s.cfg.SocketPath, "mode", s.cfg.SocketMode.String(),
		"validation", s.cfg.Validation.String(), "workload_api", !s.cfg.DisableWorkloadAPI)
	var err error
	select {
	case <-ctx.Done():
		s.stop()
		err = <-serveErr
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
	case err = <-serveErr:
		s.stop()
	}
	cancel()
	wg.Wait()
	return err
}

// stop shuts the server down gracefully, bounded by ShutdownGrace.
func (s *Server) stop() {
	s.stopOnce.Do(func() {
		s.health.Shutdown()
		close(s.stopping)
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		t := time.NewTimer(s.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.log.Warn("agent graceful stop timed out; closing connections")
			s.grpc.Stop()
			<-done
		}
	})
}

// Close releases a Server that was never Run (it closes the socket). After Run it is a
// no-op.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.runOnce.Do(func() {})
		s.stop()
		_ = s.lis.Close()
	})
	return nil
}

// trackReadiness keeps the health status in line with the cache: SERVING while the bundle
// and every ReadyIdentity are present.
func (s *Server) trackReadiness(ctx context.Context) {
	w := s.cache.Watch()
	defer w.Close()
	w.Follow(s.cfg.ReadyIdentities, true)
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if _, ok := s.cache.Bundle(); !ok {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		for _, id := range s.cfg.ReadyIdentities {
			if _, ok := s.cache.Identity(id); !ok {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
		}
		if st != last {
			s.setHealth(st)
			s.log.Info("agent readiness", "status", st.String())
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		case <-w.C():
		}
	}
}

func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	select {
	case <-s.stopping:
		return
	default:
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(HealthSDS, st)
	if !s.cfg.DisableWorkloadAPI {
		s.health.SetServingStatus(HealthWorkloadAPI, st)
	}
}
