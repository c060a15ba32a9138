package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/athenz-mesh/athenz-mesh/sds"
)

// agent is everything `athenz-mesh agent` runs: the identity manager, the SDS/Workload
// API server on its socket, the token API and the metrics and health listener. It
// implements server.
type agent struct {
	cfg      sds.AgentConfig
	log      *slog.Logger
	cache    *sds.Cache
	issuer   *agentIssuer
	istioCA  *agentIstioCA // node mode with node.istio_ca only
	manager  *sds.Manager
	server   *sds.Server
	tokenAPI *sds.TokenAPI
	tokenLn  net.Listener
	metrics  *http.Server
	metricLn net.Listener

	closeOnce sync.Once
}

// agentDeps are what tests inject; zero values are the production ones.
type agentDeps struct {
	log   *slog.Logger
	reg   *prometheus.Registry
	clock sds.Clock
	rand  func() float64
	// pods replaces, in node mode, the kubelet's pod list (tests have no Kubernetes).
	pods sds.PodLookup
}

// newAgent builds the agent from a validated config and binds its socket and listeners,
// so that configuration and address problems surface before Run.
func newAgent(cfg sds.AgentConfig, deps agentDeps) (a *agent, err error) {
	a = &agent{cfg: cfg, log: deps.log, cache: sds.NewCache()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.issuer, err = newAgentIssuer(cfg.Issuer.URL, cfg.Issuer.CAFile, cfg.Issuer.Timeout); err != nil {
		return nil, err
	}
	auth, node, err := a.authorizer(deps.pods)
	if err != nil {
		return nil, err
	}
	if a.manager, err = buildManager(cfg, a.cache, a.issuer, node, deps); err != nil {
		return nil, err
	}
	if a.server, err = sds.New(cfg.ServerConfig(), sds.Deps{Cache: a.cache, Authorizer: auth, Logger: deps.log, Registerer: deps.reg}); err != nil {
		return nil, err
	}
	if err := a.buildTokenAPI(deps); err != nil {
		return nil, err
	}
	if m := cmpDefault(cfg.Metrics.Listen, sds.DefaultAgentMetrics); m != sds.ListenOffValue {
		if a.metricLn, err = net.Listen("tcp", m); err != nil {
			return nil, fmt.Errorf("metrics.listen %s: %w", m, err)
		}
		a.metrics = &http.Server{Handler: a.metricsHandler(deps.reg), ReadHeaderTimeout: 10 * time.Second}
	}
	return a, nil
}

// buildManager makes the identity manager (shared by the daemon and the one-shot
// commands).
func buildManager(cfg sds.AgentConfig, sink sds.SecretSink, iss sds.Issuer, node *sds.NodeIdentities, deps agentDeps) (*sds.Manager, error) {
	mc, err := cfg.ManagerConfig()
	if err != nil {
		return nil, err
	}
	var files *sds.Files
	if fc := cfg.FilesConfig(); fc != nil {
		if files, err = sds.NewFiles(*fc); err != nil {
			return nil, err
		}
	}
	var reg prometheus.Registerer
	if deps.reg != nil {
		reg = deps.reg
	}
	return sds.NewManager(mc, sds.ManagerDeps{
		Issuer: iss, Sink: sink, Files: files, Node: node, Logger: deps.log, Registerer: reg,
		Clock: deps.clock, Rand: deps.rand,
	})
}

// authorizer returns the peer authorizer of the mode and, in node mode, the node
// identities the manager follows. pods, when set, replaces the kubelet's pod list.
func (a *agent) authorizer(pods sds.PodLookup) (sds.Authorizer, *sds.NodeIdentities, error) {
	if a.cfg.Mode != sds.ModeNode {
		auth, err := sds.NewSidecarAuthorizer(a.cfg.IdentityNames(), a.cfg.Sidecar.UIDs, a.cfg.Sidecar.GIDs)
		return auth, nil, err
	}
	n := a.cfg.Node
	node := &sds.NodeIdentities{Demand: a.cache, Template: a.cfg.NodeTemplate(), TokenPath: n.TokenPath, Istio: a.cfg.NodeIstio()}
	if node.Istio != nil {
		var err error
		if a.istioCA, err = newAgentIstioCA(n.IstioCA, a.cfg.Issuer.CAFile); err != nil {
			return nil, nil, err
		}
		node.Istio.CA = a.istioCA
	}
	if pods == nil {
		client, err := kubeletClient(n.Kubelet)
		if err != nil {
			return nil, nil, err
		}
		if pods, err = sds.NewKubeletPods(sds.KubeletPodsConfig{
			URL: n.Kubelet.URL, TokenFile: cmpDefault(n.Kubelet.TokenFile, sds.DefaultServiceAccountTokenFile), Client: client,
		}); err != nil {
			return nil, nil, err
		}
	}
	mapping := n.Mapping
	auth, err := sds.NewNodeAuthorizer(sds.NodeConfig{
		Pods: pods, ProcRoot: n.ProcRoot,
		Map: func(p sds.Pod) (string, error) {
			d, s, ok := mapping.Map(p.Namespace, p.ServiceAccount)
			if !ok {
				return "", nil
			}
			id := d + "." + s
			if err := node.Record(p, id); err != nil {
				return "", err
			}
			return id, nil
		},
	})
	return auth, node, err
}

func kubeletClient(k sds.AgentKubeletConfig) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: k.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if !k.InsecureSkipVerify {
		caFile := cmpDefault(k.CAFile, sds.DefaultServiceAccountCAFile)
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("node.kubelet.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("node.kubelet.ca_file %s: no PEM certificate", caFile)
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}, nil
}

func (a *agent) buildTokenAPI(deps agentDeps) error {
	addr := a.cfg.TokenAPI.Listen
	if addr == "" || addr == sds.ListenOffValue {
		return nil
	}
	names := a.cfg.IdentityNames()
	tc := a.cfg.TokenAPI.TokenAPIConfig()
	tc.AllowedIdentities = names
	if len(names) > 0 {
		tc.DefaultIdentity = names[0]
	}
	api, err := sds.NewTokenAPI(tc, sds.TokenAPIDeps{Cache: a.cache, Fetcher: a.manager, Logger: deps.log, Registerer: deps.reg})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("token_api.listen %s: %w", addr, err)
	}
	a.tokenAPI, a.tokenLn = api, ln
	return nil
}

// metricsHandler serves /metrics, /healthz (the process is up), /readyz (every
// configured identity holds a valid certificate and the bundle is set) and /status (the
// identities' state as JSON).
func (a *agent) metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.manager.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready:\n" + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.manager.Status())
	})
	return mux
}

// Run runs every part until ctx is done or one of them fails; then all stop.
func (a *agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		})
	}
	run("identity manager", a.manager.Run)
	run("sds server", a.server.Run)
	if a.tokenAPI != nil {
		run("token api", func(ctx context.Context) error { return a.tokenAPI.Serve(ctx, a.tokenLn) })
	}
	if a.metrics != nil {
		run("metrics", a.serveMetrics)
	}
	a.log.Info("agent started", "mode", cmpDefault(a.cfg.Mode, sds.ModeSidecar), "identities", strings.Join(a.cfg.IdentityNames(), ","),
		"socket", a.server.SocketPath())
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (a *agent) serveMetrics(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- a.metrics.Serve(a.metricLn) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.metrics.Shutdown(sctx)
		<-done
		return nil
	}
}

// Close releases what newAgent bound.
func (a *agent) Close() error {
	a.closeOnce.Do(func() {
		if a.server != nil {
			a.server.Close()
		}
		if a.tokenLn != nil {
			a.tokenLn.Close()
		}
		if a.metricLn != nil {
			a.metricLn.Close()
		}
		if a.issuer != nil {
			a.issuer.close()
		}
		a.istioCA.close()
	})
	return nil
}

// cmpDefault returns v, or def when v is empty.
func cmpDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
