package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/authz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
	"github.com/athenz-mesh/athenz-mesh/sds"
)

type devFlags struct {
	dir, domains, ports string
	readyTimeout        time.Duration
}

func newDevCmd() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev [--dir DIR] [--domains DIR] [--ports auto]",
		Short: "Run issuer, authz and agent together on loopback, with example domains",
		Long: `Start the issuer, authz and the agent in one process on 127.0.0.1, for trying
athenz-mesh and for tests. Everything lives in --dir: a CA created on first start (kept
afterwards), the SQLite records, the domain files (the quickstart domains, with a service
key registered for media.frontend) unless --domains names others, and the config file of
each component, which you can read and reuse.

The issuer compiles the domains into a signed policy bundle; authz long-polls it, so an
edit to a domain file is enforced within about two seconds. The agent registers
media.frontend and sports.api with one-time join tokens, keeps them renewed, and serves
them over SDS and the SPIFFE Workload API on DIR/agent.sock, to apps on the token API,
and as files in DIR/sia.

When all parts are ready, a summary is printed and written to DIR/dev.json. Logs go to
DIR/dev.log; warnings, errors, domain reloads, bundle swaps and certificate issuance also
to standard error. Ctrl-C stops everything.

Ports (--ports): the defaults below, "auto" for free ones, or name=port pairs:
  zts 4443, issuer-metrics 9194, authz-grpc 9191, authz-http 9193,
  authz-metrics 9192, agent-metrics 9195, token-api 4080`,
		Example: `  athenz-mesh dev
  athenz-mesh dev --dir /tmp/mesh --ports auto
  athenz-mesh dev --domains ./my-domains --ports zts=5443`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "athenz-mesh-dev", "directory for the CA, records, keys, configs and sockets (kept between runs)")
	fl.StringVar(&f.domains, "domains", "", "directory of domain files to use as they are (default: DIR/domains, seeded with the quickstart domains)")
	fl.StringVar(&f.ports, "ports", "", `"auto" for free ports, or name=port pairs overriding the defaults`)
	fl.DurationVar(&f.readyTimeout, "ready-timeout", time.Minute, "how long each part may take to become ready")
	return cmd
}

// devPart is one running component.
type devPart struct {
	name string
	srv  server
	done chan error
}

// runDev starts the parts in order (each needs the previous one ready), prints the
// summary, and waits until ctx is done or a part fails.
func runDev(ctx context.Context, stdout, stderr io.Writer, f devFlags) error {
	ports, err := parseDevPorts(f.ports)
	if err != nil {
		return usageErrorf("%v", err)
	}
	l, err := newDevLayout(f.dir, f.domains)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if err := l.prepare(); err != nil {
		return failed(err)
	}
	if err := l.writeConfigs(ports); err != nil {
		return failed(err)
	}
	logFile, err := os.OpenFile(l.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return failed(err)
	}
	defer logFile.Close()
	log := slog.New(devLogHandler(logFile, stderr))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var parts []*devPart
	defer func() {
		cancel()
		for i := len(parts) - 1; i >= 0; i-- {
			<-parts[i].done
			_ = parts[i].srv.Close()
		}
	}()
	start := func(name string, build func(*slog.Logger, *prometheus.Registry) (server, error), readyURL, detail string) error {
		reg := prometheus.NewRegistry()
		srv, err := build(log.With("component", name), reg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p := &devPart{name: name, srv: srv, done: make(chan error, 1)}
		parts = append(parts, p)
		go func() { p.done <- srv.Run(ctx) }()
		began := time.Now()
		if err := waitReady(ctx, readyURL, p, f.readyTimeout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-7s ready in %-6s %s\n", name, time.Since(began).Round(10*time.Millisecond), detail)
		return nil
	}

	issuerCfg, err := loadDevIssuerConfig(l)
	if err != nil {
		return failed(err)
	}
	if err := createDevJoinTokens(ctx, issuerCfg, l); err != nil {
		return failed(err)
	}
	sum := l.summary(ports)
	var iss *issuer.Server
	err = start("issuer", func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
		s, err := issuer.New(issuerCfg, issuer.Deps{Logger: log, Registry: reg})
		iss = s
		return s, err
	}, "http://"+loopback(ports.IssuerMetrics)+"/readyz", sum.ZTSURL+"  (CA "+l.CACert+")")
	if err != nil {
		return failed(err)
	}
	if err := writeDevTrust(l, iss, issuerCfg, sum.ZTSURL); err != nil {
		return failed(err)
	}
	err = start("authz", func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
		cfg, err := authz.LoadConfig(l.AuthzYAML)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			return nil, err
		}
		return authz.New(cfg, authz.Deps{Logger: log, Registry: reg})
	}, "http://"+loopback(ports.AuthzMetrics)+"/readyz", "grpc "+sum.AuthzGRPC+"  http "+sum.AuthzHTTP)
	if err != nil {
		return failed(err)
	}
	err = start("agent", func(log *slog.Logger, reg *prometheus.Registry) (server, error) {
		cfg, err := sds.LoadAgentConfig(l.AgentYAML)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			return nil, err
		}
		return newAgent(cfg, agentDeps{log: log, reg: reg})
	}, "http://"+loopback(ports.AgentMetrics)+"/readyz", "sds+workload api "+l.Socket+"  tokens "+sum.TokenAPI+"  ("+strings.Join(devIdentities, ", ")+")")
	if err != nil {
		return failed(err)
	}
	if err := writeDevSummary(l.Summary, sum); err != nil {
		return failed(err)
	}
	printDevSummary(stdout, sum)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "stopping")
		return nil
	case err := <-firstDone(parts):
		return failed(fmt.Errorf("a part stopped: %w", err))
	}
}

// loadDevIssuerConfig reads the issuer config dev mode wrote.
func loadDevIssuerConfig(l devLayout) (issuer.Config, error) {
	cfg, err := issuer.LoadConfig(l.IssuerYAML)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// createDevJoinTokens creates a one-time join token for each dev identity in the issuer's
// store, written 0600 where the agent config expects it. The agent registers with it and
// removes it; on the next start fresh ones are made.
func createDevJoinTokens(ctx context.Context, cfg issuer.Config, l devLayout) error {
	st, err := issuer.OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer st.Close()
	for _, principal := range devIdentities {
		domain, service, _ := athenz.SplitPrincipal(principal)
		secret, hash, err := jointoken.New()
		if err != nil {
			return err
		}
		err = st.CreateJoinToken(ctx, store.JoinToken{IDHash: hash, Domain: domain, Service: service,
			ExpiresAt: time.Now().Add(15 * time.Minute), CreatedBy: "athenz-mesh dev"})
		if err != nil {
			return fmt.Errorf("join token for %s: %w", principal, err)
		}
		if err := writeFileAtomic(filepath.Join(l.Tokens, principal+".token"), []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeDevTrust writes the CA bundle and athenz.conf once the issuer has its CA and keys.
func writeDevTrust(l devLayout, iss *issuer.Server, cfg issuer.Config, ztsURL string) error {
	if err := writeFileAtomic(l.CACert, iss.CA().RootsPEM(), 0o644); err != nil {
		return err
	}
	keyFile, keyID := cfg.Keys.ZTS.File, cfg.Keys.ZTS.ID
	if keyFile == "" {
		keyFile = filepath.Join(l.IssuerData, "zts.key.pem")
	}
	if keyID == "" {
		keyID = issuer.DefaultKeyID
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	key, err := athenz.ParsePrivateKeyPEM(data)
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	return writeAthenzConf(l.AthenzConf, strings.TrimSuffix(ztsURL, "/zts/v1"), keyID, key.Public())
}

// waitReady polls url until it answers 200, the part stops, ctx ends or timeout passes.
func waitReady(ctx context.Context, url string, p *devPart, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err // for the shutdown in runDev
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("%s: %w", p.name, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s: not ready after %s (see %s)", p.name, timeout, url)
		case <-tick.C:
		}
	}
}

// firstDone receives the first part's Run result.
func firstDone(parts []*devPart) <-chan error {
	out := make(chan error, len(parts))
	for _, p := range parts {
		go func() {
			err := <-p.done
			p.done <- err
			if err == nil {
				err = fmt.Errorf("%s stopped", p.name)
			} else {
				err = fmt.Errorf("%s: %w", p.name, err)
			}
			out <- err
		}()
	}
	return out
}

func writeDevSummary(path string, s devSummary) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), 0o644)
}

func printDevSummary(w io.Writer, s devSummary) {
	fmt.Fprintf(w, `
athenz-mesh dev is ready (written to %s)
  ZTS API          %s
  CA bundle        %s
  athenz.conf      %s
  authz            grpc %s, http %s
  SDS / Workload   unix://%s
  token API        %s
  identities       %s (files in %s)
  domains          %s (edits are enforced within about 2 s)
`, filepath.Join(filepath.Dir(s.CACert), "dev.json"), s.ZTSURL, s.CACert, s.AthenzConf, s.AuthzGRPC, s.AuthzHTTP,
		s.SDSSocket, s.TokenAPI, strings.Join(s.Identities, ", "), s.FilesDir, s.Domains)
	if s.ServiceKey != "" {
		fmt.Fprintf(w, `  service key      %s (registered for %s, version %s)

Try Athenz's own client:
  zts-svccert -zts %s -cacert %s -private-key %s -key-version %s \
    -domain media -service frontend -dns-domain athenz.cloud -cert-file frontend.cert.pem
`, s.ServiceKey, s.ServiceKeyOwner, s.ServiceKeyID, s.ZTSURL, s.CACert, s.ServiceKey, s.ServiceKeyID)
	}
	fmt.Fprintln(w, "\nCtrl-C stops everything; the next start keeps the CA and records.")
}

// devTerminalEvents are the info records worth a line on the terminal while a user edits
// domain files or watches identities: each says that something the user did took effect.
var devTerminalEvents = map[string]bool{
	"domains reloaded":       true, // issuer: the domain files were read again
	"policy bundle in force": true, // authz: the new decisions apply
	"certificate issued":     true, // agent: an identity was issued or renewed
}

// devLogHandler writes every record at info and above to file as JSON, and to the
// terminal as text the warnings, errors and devTerminalEvents, so that the terminal shows
// progress and problems.
func devLogHandler(file, term io.Writer) slog.Handler {
	return teeHandler{
		file: slog.NewJSONHandler(file, &slog.HandlerOptions{Level: slog.LevelInfo}),
		term: slog.NewTextHandler(term, &slog.HandlerOptions{Level: slog.LevelInfo}),
	}
}

// teeHandler sends each record to file, and the notable ones to term.
type teeHandler struct{ file, term slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.file.Enabled(ctx, l) || t.term.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if t.file.Enabled(ctx, r.Level) {
		errs = append(errs, t.file.Handle(ctx, r.Clone()))
	}
	if r.Level >= slog.LevelWarn || devTerminalEvents[r.Message] {
		errs = append(errs, t.term.Handle(ctx, r.Clone()))
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.file.WithAttrs(as), t.term.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.file.WithGroup(name), t.term.WithGroup(name)}
}
