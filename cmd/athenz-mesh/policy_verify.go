package main

import (
	"crypto"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

type verifyFlags struct {
	key   string
	keyID string
}

func newPolicyVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --key PUB.pem [--key-id ID] [flags] BUNDLE.tar.gz",
		Short: "Verify a bundle's signature and contents",
		Long: `Verify an OPA bundle written by 'policy compile --signing-key': it must be signed, under
--key-id, by the private key matching --key, the signature must cover exactly the bundle's
files, and the bundle must be well formed (no oversized or path-traversing entries, a
data.json that decodes exactly, a manifest revision that matches it). An unsigned bundle
fails. Prints the bundle's revision and domain count.

Exit status: 0 when the bundle verifies; 1 when it does not (the reason is printed); 2 when
the command could not run (bad flags, unreadable key or bundle file).`,
		Example: `  athenz-mesh policy verify --key bundle-key.pub.pem bundle.tar.gz
  athenz-mesh policy verify --key v1.pub.pem --key-id v1 bundle.tar.gz`,
		Args: oneArg("BUNDLE.tar.gz"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.OutOrStdout(), f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", `PEM public key ("PUBLIC KEY", ECDSA or RSA) the bundle must be signed with; required`)
	fl.StringVar(&f.keyID, "key-id", policy.DefaultBundleKeyID, "key id the signature must name: the --key-id given to 'policy compile'")
	return cmd
}

func runVerify(stdout io.Writer, f verifyFlags, bundlePath string) error {
	if f.key == "" {
		return usageErrorf("--key is required: the public key the bundle must be signed with")
	}
	if f.keyID == "" {
		return usageErrorf("--key-id must not be empty")
	}
	pemBytes, err := os.ReadFile(f.key)
	if err != nil {
		return failed(fmt.Errorf("read key: %w", err))
	}
	pub, err := policy.ParseVerificationKey(pemBytes)
	if err != nil {
		return failed(fmt.Errorf("%s: %w", f.key, err))
	}
	file, err := os.Open(bundlePath)
	if err != nil {
		return failed(fmt.Errorf("open bundle: %w", err))
	}
	defer file.Close()
	b, err := policy.ReadBundle(file, policy.ReadOptions{VerificationKeys: map[string]crypto.PublicKey{f.keyID: pub}})
	if err != nil {
		return answerNo(fmt.Errorf("%s failed verification: %w", bundlePath, err))
	}
	fmt.Fprintf(stdout, "%s: verified (key id %q): revision %s, %d domains\n", bundlePath, b.KeyID, b.Revision, len(b.Compiled.Domains))
	return nil
}
