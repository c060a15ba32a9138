package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

func newIssuerJoinTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Create one-time join tokens for join_token providers",
		Long: `Join tokens let a workload register once as a given service through a provider whose
attestor is join_token. The issuer stores only the token's SHA-256; the token itself is
printed once and never again.

  create  create a token for --domain and --service, valid for --ttl`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newIssuerJoinTokenCreateCmd())
	return cmd
}

func newIssuerJoinTokenCreateCmd() *cobra.Command {
	var config, domain, service, createdBy string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create --config issuer.yaml --domain D --service S [--ttl 1h]",
		Short: "Create a join token and print it",
		Long: `Create a one-time join token for domain.service in the store the issuer config names
(store.path, store.dsn, or issuer.db in data_dir) and print it on standard output. The
workload registers with it as attestationData, through a provider with attestor
join_token; the domain must still allow that provider to launch the service.`,
		Example: `  athenz-mesh issuer join-token create --config issuer.yaml --domain sports --service api --ttl 1h`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageErrorf("--config is required: the issuer config file")
			}
			domain, service = strings.ToLower(domain), strings.ToLower(service)
			if err := athenz.ValidateDomainName(domain); err != nil {
				return usageErrorf("--domain: %v", err)
			}
			if err := athenz.ValidateSimpleName(service); err != nil {
				return usageErrorf("--service: %v", err)
			}
			if ttl <= 0 {
				return usageErrorf("--ttl %s: want a positive duration such as 1h", ttl)
			}
			cfg, err := issuer.LoadConfig(config)
			if err != nil {
				return failed(err)
			}
			st, err := issuer.OpenStore(cmd.Context(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				return failed(err)
			}
			defer st.Close()
			secret, hash, err := jointoken.New()
			if err != nil {
				return failed(err)
			}
			expires := time.Now().Add(ttl)
			if err := st.CreateJoinToken(cmd.Context(), store.JoinToken{
				IDHash: hash, Domain: domain, Service: service, ExpiresAt: expires, CreatedBy: createdBy,
			}); err != nil {
				return failed(fmt.Errorf("create join token: %w", err))
			}
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			fmt.Fprintf(cmd.ErrOrStderr(), "join token for %s.%s, valid until %s, usable once\n", domain, service, expires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&config, "config", "c", "", "issuer config file (YAML); required")
	fl.StringVar(&domain, "domain", "", "domain of the service; required")
	fl.StringVar(&service, "service", "", "service name; required")
	fl.DurationVar(&ttl, "ttl", time.Hour, "how long the token stays usable")
	fl.StringVar(&createdBy, "created-by", "", "who created the token, for the audit trail")
	return cmd
}
