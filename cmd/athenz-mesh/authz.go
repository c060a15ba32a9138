package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/authz"
)

type authzFlags struct {
	config      string
	grpcAddr    string
	grpcSocket  string
	httpAddr    string
	metricsAddr string
	checkOnly   bool
}

func newAuthzCmd() *cobra.Command {
	var f authzFlags
	cmd := &cobra.Command{
		Use:   "authz --config authz.yaml [flags]",
		Short: "Run the Envoy ext_authz server that decides with Athenz policy",
		Long: `Serve Envoy's external authorization API (envoy.service.auth.v3.Authorization/Check)
over gRPC on TCP and, optionally, a Unix socket, and the same decisions over HTTP for
Envoy's http_service mode and Istio's envoyExtAuthzHttp provider.

Each request is identified (access token, role token, role certificate or mTLS identity),
mapped to an Athenz domain, action and resource, and decided by the native evaluator from
a signed policy bundle ('athenz-mesh policy compile'), loaded from a file or URL and
hot-swapped when it changes. Allowed: 200/OK with x-athenz-principal, x-athenz-domain and
x-athenz-roles for the upstream. Denied: 403 with a JSON reason (401 with WWW-Authenticate
for missing or bad credentials). No bundle yet or an internal error: 503 (configurable)
with x-athenz-decision: error, never reported as a deny.

/metrics, /healthz and /readyz (ready once a bundle is loaded) are served on the metrics
address; the gRPC health service reports the same readiness. SIGINT or SIGTERM stops
gracefully. The flags override the listen addresses of the config file; 'off' turns a
listener off. See docs/authz.md for every config field.

Exit status: 0 after a clean stop (or a valid config with --check-config); 2 when the
server could not start or failed (invalid config, printed with line numbers; unreadable
keys; an address in use).`,
		Example: `  athenz-mesh authz --config /etc/athenz-mesh/authz.yaml
  athenz-mesh authz --config authz.yaml --grpc-addr 0.0.0.0:9191 --metrics-addr :9192
  athenz-mesh authz --config authz.yaml --check-config`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAuthz(ctx, cmd, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "authz config file (YAML); required")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "", `gRPC ext_authz TCP address, overriding listen.grpc ("off" to disable; config default 127.0.0.1:9191)`)
	fl.StringVar(&f.grpcSocket, "grpc-socket", "", "gRPC ext_authz Unix socket path, overriding listen.grpc_socket")
	fl.StringVar(&f.httpAddr, "http-addr", "", "HTTP ext_authz address, overriding listen.http")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", `metrics and health address, overriding listen.metrics ("off" to disable; config default 127.0.0.1:9192)`)
	fl.BoolVar(&f.checkOnly, "check-config", false, "validate the config, read its keys, and exit without serving (binds no port)")
	return cmd
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments; got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// loadAuthzConfig reads the config file and applies the flags that were given.
func loadAuthzConfig(cmd *cobra.Command, f authzFlags) (authz.Config, error) {
	return loadConfigFile(cmd, "authz", f.config, authz.LoadConfig, func(c *authz.Config) []flagOverride {
		return []flagOverride{
			{"grpc-addr", &c.Listen.GRPC, f.grpcAddr},
			{"grpc-socket", &c.Listen.GRPCSocket, f.grpcSocket},
			{"http-addr", &c.Listen.HTTP, f.httpAddr},
			{"metrics-addr", &c.Listen.Metrics, f.metricsAddr},
		}
	}, (*authz.Config).Validate)
}

// runAuthz serves until ctx is done.
func runAuthz(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer, f authzFlags) error {
	cfg, err := loadAuthzConfig(cmd, f)
	if err != nil {
		return err
	}
	return serve(ctx, stdout, stderr, serveSpec{
		name:      "authz",
		config:    f.config,
		checkOnly: f.checkOnly,
		preflight: func() error { return authz.Preflight(cfg) },
		log:       cfg.Log,
		build: func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
			return authz.New(cfg, authz.Deps{Logger: log, Registry: reg})
		},
	})
}
