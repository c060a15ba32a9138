package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/authz"
	"github.com/athenz-mesh/athenz-mesh/sds"
)

type agentFlags struct {
	config       string
	socket       string
	metricsAddr  string
	tokenAPIAddr string
	filesDir     string
	checkOnly    bool
}

func newAgentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent --config agent.yaml [flags] | agent register|rotate|rolecert --config agent.yaml",
		Short: "Run the node agent: workload certificates over SDS, the Workload API, files and tokens",
		Long: `The agent keeps each workload's private key on this machine, proves the workload's identity
to the issuer (Kubernetes projected token, join token, service-key n-token or register
token), gets its certificate, renews it over mTLS at a jittered point after half its
life (retrying with backoff, and serving the current certificate for as long as it is
valid), and hands it out:

  - to Envoy over SDS v3 and to SPIFFE workloads over the Workload API, on a Unix socket
    whose peers are identified by their kernel credentials (docs/agent-sds.md);
  - to applications as files in Athenz SIA's layout (files.dir) and over the local token
    API (token_api.listen);
  - role certificates for the configured roles, renewed the same way.

In sidecar mode it keeps the configured identities; in node mode (a DaemonSet) the
identities of the pods on the node that ask for them.

  register  register every identity once, write the files and exit (no daemon)
  rotate    refresh every identity with the certificate in the files and exit
  rolecert  get the role certificates with the certificate in the files and exit

/metrics, /healthz, /readyz and /status are served on the metrics address. SIGINT or
SIGTERM stops gracefully. Flags override the config file. See docs/agent.md.

Exit status: 0 after a clean stop (or a valid config with --check-config, or a one-shot
command that succeeded); 1 when a one-shot command could not get a certificate; 2 when
the agent could not start (invalid config, socket or address in use) or failed.`,
		Example: `  athenz-mesh agent --config /etc/athenz-mesh/agent.yaml
  athenz-mesh agent --config agent.yaml --socket /run/secrets/workload-spiffe-uds/socket
  athenz-mesh agent register --config agent.yaml`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			if f.config == "" {
				if cmd.Flags().NFlag() > 0 {
					return usageErrorf("--config is required: the agent config file")
				}
				return cmd.Help()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, cmd, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "socket", "", "SDS and Workload API socket, overriding sds.socket (config default "+sds.DefaultAgentSocket+")")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", `metrics and health address, overriding metrics.listen ("off" to disable; config default `+sds.DefaultAgentMetrics+")")
	fl.StringVar(&f.tokenAPIAddr, "token-api-addr", "", `token API address, overriding token_api.listen ("off" to disable)`)
	fl.BoolVar(&f.checkOnly, "check-config", false, "validate the config and read the files it names, then exit without serving")
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", "", "agent config file (YAML); required")
	pf.StringVar(&f.filesDir, "files-dir", "", "credential files directory (SIA layout), overriding files.dir")
	for _, op := range []sds.OnceOp{sds.OnceRegister, sds.OnceRotate, sds.OnceRoleCert} {
		cmd.AddCommand(newAgentOnceCmd(op, &f))
	}
	return cmd
}

// loadAgentConfig reads the config file and applies the flags that were given.
func loadAgentConfig(cmd *cobra.Command, f agentFlags) (sds.AgentConfig, error) {
	return loadConfigFile(cmd, "agent", f.config, sds.LoadAgentConfig, func(c *sds.AgentConfig) []flagOverride {
		return []flagOverride{
			{"socket", &c.SDS.Socket, f.socket},
			{"metrics-addr", &c.Metrics.Listen, f.metricsAddr},
			{"token-api-addr", &c.TokenAPI.Listen, f.tokenAPIAddr},
			{"files-dir", &c.Files.Dir, f.filesDir},
		}
	}, (*sds.AgentConfig).Validate)
}

// runAgent serves until ctx is done.
func runAgent(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer, f agentFlags) error {
	cfg, err := loadAgentConfig(cmd, f)
	if err != nil {
		return err
	}
	return serve(ctx, stdout, stderr, serveSpec{
		name:      "agent",
		config:    f.config,
		checkOnly: f.checkOnly,
		preflight: func() error { return agentPreflight(cfg) },
		log:       authz.LogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format},
		build: func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
			return newAgent(cfg, agentDeps{log: log, reg: reg})
		},
	})
}

// agentPreflight reads what the config names without binding or issuing anything.
func agentPreflight(cfg sds.AgentConfig) error {
	if _, err := newAgentIssuer(cfg.Issuer.URL, cfg.Issuer.CAFile, cfg.Issuer.Timeout); err != nil {
		return err
	}
	if _, err := cfg.ManagerConfig(); err != nil {
		return err
	}
	if cfg.Mode == sds.ModeNode && !cfg.Node.Kubelet.InsecureSkipVerify {
		if _, err := kubeletClient(cfg.Node.Kubelet); err != nil {
			return err
		}
	}
	return nil
}

func newAgentOnceCmd(op sds.OnceOp, f *agentFlags) *cobra.Command {
	short := map[sds.OnceOp]string{
		sds.OnceRegister: "Register every identity with fresh attestation, write the files and exit",
		sds.OnceRotate:   "Refresh every identity over mTLS with the certificate in the files, write the new ones and exit",
		sds.OnceRoleCert: "Get the configured role certificates with the certificate in the files, write them and exit",
	}[op]
	return &cobra.Command{
		Use:   string(op) + " --config agent.yaml [--files-dir DIR]",
		Short: short,
		Long: short + `, as Athenz SIA's one-shot commands do for containers without a daemon
(an init container registers, a cron job rotates). files.dir (or --files-dir) is required:
the key, certificate, CA and role certificates are written there in SIA's layout
(docs/agent.md). The SDS socket, token API and metrics are not started.

Exit status: 0 when every identity succeeded; 1 when one could not get its certificate
(each failure is printed); 2 for an invalid config.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgentOnce(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr(), *f, op)
		},
	}
}

// runAgentOnce does one issuance for every identity and writes the files.
func runAgentOnce(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer, f agentFlags, op sds.OnceOp) error {
	cfg, err := loadAgentConfig(cmd, f)
	if err != nil {
		return err
	}
	if cfg.Files.Dir == "" {
		return usageErrorf("%s writes credential files: set files.dir in %s or pass --files-dir", op, f.config)
	}
	if cfg.Mode == sds.ModeNode {
		return usageErrorf("%s works with the configured identities of sidecar mode, not node mode", op)
	}
	log, err := authz.NewLogger(authz.LogConfig{Level: cmpDefault(cfg.Log.Level, "warn"), Format: cmpDefault(cfg.Log.Format, "text")}, stderr)
	if err != nil {
		return failed(err)
	}
	iss, err := newAgentIssuer(cfg.Issuer.URL, cfg.Issuer.CAFile, cfg.Issuer.Timeout)
	if err != nil {
		return failed(err)
	}
	defer iss.close()
	m, err := buildManager(cfg, sds.NewCache(), iss, nil, agentDeps{log: log})
	if err != nil {
		return failed(err)
	}
	if err := m.Once(ctx, op); err != nil {
		return answerNo(fmt.Errorf("agent %s: %w", op, err))
	}
	for _, s := range m.Status() {
		fmt.Fprintf(stdout, "%s: certificate valid until %s, files in %s\n", s.Name, s.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), cfg.Files.Dir)
	}
	return nil
}
