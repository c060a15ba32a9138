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
	"github.com/athenz-mesh/athenz-mesh/issuer"
)

type issuerFlags struct {
	config      string
	listen      string
	metricsAddr string
	checkOnly   bool
}

func newIssuerCmd() *cobra.Command {
	var f issuerFlags
	cmd := &cobra.Command{
		Use:   "issuer --config issuer.yaml [flags] | issuer ca|join-token ...",
		Short: "Athenz-compatible certificate authority and token service",
		Long: `The issuer is athenz-mesh's certificate authority and token service. With --config it serves
the Athenz ZTS REST API over HTTPS under /zts/v1, so Athenz's own tools and libraries
(zts-svccert, zts-rolecert, zts-accesstoken, zpe-updater, SIA, the ZTS Go client) work
against it: instance registration and refresh with attestation, role certificates, access
and role tokens, signed policy data, JWKS, CA bundles, and the OPA bundle for authz.

  ca          create, rotate and inspect the issuer's CA: init, rotate, show
  join-token  create one-time join tokens for the join_token providers

The domain files (Athenz ZMS DomainData) say which provider may launch which service, who
holds which role and which public keys services registered; they are reloaded when they
change. /metrics, /healthz and /readyz are served on the metrics address. SIGINT or
SIGTERM stops gracefully. See docs/issuer.md for every config field and route, and
docs/issuer-ca.md for the CA.

Exit status: 0 after a clean stop (or a valid config with --check-config); 2 when the
server could not start or failed.`,
		Example: `  athenz-mesh issuer --config /etc/athenz-mesh/issuer.yaml
  athenz-mesh issuer --config issuer.yaml --listen 0.0.0.0:4443 --check-config
  athenz-mesh issuer ca init --dir /var/lib/athenz-mesh/issuer/ca`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		// As for 'policy': a mistyped subcommand must not print help and exit 0.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			if f.config == "" {
				if cmd.Flags().NFlag() > 0 {
					return usageErrorf("--config is required: the issuer config file")
				}
				return cmd.Help()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runIssuer(ctx, cmd, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "issuer config file (YAML); required to serve")
	fl.StringVar(&f.listen, "listen", "", "HTTPS address of the ZTS API, overriding listen.address (config default "+issuer.DefaultListenAddr+")")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", `metrics and health address, overriding listen.metrics ("off" to disable; config default `+issuer.DefaultMetricsAddr+")")
	fl.BoolVar(&f.checkOnly, "check-config", false, "validate the config and load the domain files, then exit without serving (creates nothing, binds no port)")
	cmd.AddCommand(newIssuerCACmd(), newIssuerJoinTokenCmd())
	return cmd
}

// loadIssuerConfig reads the config file and applies the flags that were given.
func loadIssuerConfig(cmd *cobra.Command, f issuerFlags) (issuer.Config, error) {
	return loadConfigFile(cmd, "issuer", f.config, issuer.LoadConfig, func(c *issuer.Config) []flagOverride {
		return []flagOverride{
			{"listen", &c.Listen.Address, f.listen},
			{"metrics-addr", &c.Listen.Metrics, f.metricsAddr},
		}
	}, (*issuer.Config).Validate)
}

// runIssuer serves until ctx is done.
func runIssuer(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer, f issuerFlags) error {
	cfg, err := loadIssuerConfig(cmd, f)
	if err != nil {
		return err
	}
	return serve(ctx, stdout, stderr, serveSpec{
		name:      "issuer",
		config:    f.config,
		checkOnly: f.checkOnly,
		preflight: func() error { return issuer.Preflight(cfg) },
		log:       authz.LogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format},
		build: func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
			return issuer.New(cfg, issuer.Deps{Logger: log, Registry: reg})
		},
	})
}
