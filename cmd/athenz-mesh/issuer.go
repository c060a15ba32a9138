package main

import (
	"github.com/spf13/cobra"
)

func newIssuerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issuer",
		Short: "Athenz-compatible certificate authority and token service",
		Long: `The issuer is athenz-mesh's certificate authority and token service: it speaks the Athenz
ZTS REST API, so Athenz's own tools and libraries work against it, attests workloads and
signs short-lived X.509 identities for them.

  ca   create, rotate and inspect the issuer's CA: init, rotate, show

The issuer server itself ('athenz-mesh issuer --config FILE') is being built. See
docs/issuer-ca.md for the CA, its files and the certificate profile.`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		// As for 'policy': a mistyped subcommand must not print help and exit 0.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newIssuerCACmd())
	return cmd
}
