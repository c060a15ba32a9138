package main

import (
	"crypto"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/internal/atomicfile"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

type compileFlags struct {
	out        string
	signingKey string
	keyID      string
	revision   string
}

func newPolicyCompileCmd(src *domainSource) *cobra.Command {
	var f compileFlags
	cmd := &cobra.Command{
		Use:   "compile --out BUNDLE.tar.gz [--signing-key KEY.pem [--key-id ID]] [--revision R] [flags] DIR",
		Short: "Compile domain files into an OPA bundle, optionally signed",
		Long: `Load every domain file in DIR, validate them, resolve membership and write an OPA bundle:
.manifest (revision, roots), indexed data.json, the Rego policy (data.athenz.authz.allow and
data.envoy.authz.allow), and .signatures.json when --signing-key is given, in OPA's bundle
signing format so that 'opa run --verification-key PUB.pem --signing-alg ES256' accepts it
(OPA assumes RS256: give it the algorithm the summary line prints).

The bundle is written to a temporary file and renamed over --out only when complete. A
one-line summary (domains, roles, assertions, revision, size) goes to stderr.

Exit status: 0 when the bundle was written; 2 when it was not (load problems, printed one
per line as file:line:col: message, an unreadable key, or a write error).`,
		Example: `  athenz-mesh policy compile --out bundle.tar.gz examples/quickstart/domains
  athenz-mesh policy compile --out bundle.tar.gz --signing-key bundle-key.pem --key-id v1 domains/`,
		Args: oneArg("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCompile(cmd.ErrOrStderr(), src, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "out", "o", "", "path of the bundle to write (.tar.gz); required")
	fl.StringVar(&f.signingKey, "signing-key", "", "PEM private key to sign the bundle with: ECDSA P-256/P-384/P-521 (ES256/384/512) or RSA (RS256); unsigned when empty")
	fl.StringVar(&f.keyID, "key-id", "", `key id in the bundle signature, matched by OPA's --verification-key-id; needs --signing-key (default "default")`)
	fl.StringVar(&f.revision, "revision", "", "bundle revision for .manifest; default: a hash of the compiled content")
	return cmd
}

func runCompile(stderr io.Writer, src *domainSource, f compileFlags, dir string) error {
	if f.out == "" {
		return usageErrorf("--out is required: the path of the bundle to write")
	}
	if f.keyID != "" && f.signingKey == "" {
		return usageErrorf("--key-id needs --signing-key")
	}
	var signer crypto.Signer
	if f.signingKey != "" {
		pemBytes, err := os.ReadFile(f.signingKey)
		if err != nil {
			return failed(fmt.Errorf("read signing key: %w", err))
		}
		if signer, err = policy.ParseSigningKey(pemBytes); err != nil {
			return failed(fmt.Errorf("%s: %w", f.signingKey, err))
		}
	}
	compiled, err := src.loadCompiled(dir, policy.CompileOptions{Revision: f.revision})
	if err != nil {
		return failed(err)
	}
	n, err := writeBundleFile(f.out, compiled, policy.BundleOptions{SigningKey: signer, KeyID: f.keyID})
	if err != nil {
		return failed(err)
	}
	s := countCompiled(compiled)
	signed := "unsigned"
	if signer != nil {
		alg, err := policy.SigningAlgorithm(signer.Public())
		if err != nil {
			return failed(err)
		}
		keyID := f.keyID
		if keyID == "" {
			keyID = policy.DefaultBundleKeyID
		}
		signed = fmt.Sprintf("signed %s key id %q", alg, keyID)
	}
	fmt.Fprintf(stderr, "wrote %s: %d domains, %d roles, %d assertions, revision %s, %d bytes, %s\n",
		f.out, s.domains, s.roles, s.assertions, compiled.Revision, n, signed)
	return nil
}

// writeBundleFile writes the bundle to a temporary file beside path and renames it into
// place, so that a reader never sees a partial bundle. It returns the size in bytes.
func writeBundleFile(path string, c *policy.Compiled, opts policy.BundleOptions) (int64, error) {
	var n int64
	err := atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		err := policy.WriteBundle(cw, c, opts)
		n = cw.n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bundle: %w", err)
	}
	return n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// oneArg is cobra.ExactArgs(1) with a message that names the argument.
func oneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageErrorf("%s takes one argument, %s; got %d", cmd.CommandPath(), name, len(args))
		}
		return nil
	}
}
