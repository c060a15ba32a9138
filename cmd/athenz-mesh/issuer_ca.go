package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
)

func newIssuerCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Create, rotate and inspect the issuer's certificate authority",
		Long: `Manage a CA directory for the issuer, for deployments without a PKI of their own:

  init    create a root CA (or a root and an intermediate) with key files 0600
  rotate  replace the root with an overlap: prepare, --promote, --finish
  show    print subject, key type, validity and fingerprints of CA certificates

An existing PKI's key and chain can be used instead (see docs/issuer-ca.md).`,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newIssuerCAInitCmd(), newIssuerCARotateCmd(), newIssuerCAShowCmd())
	return cmd
}

// caGenFlags are the flags that say what init and rotate generate.
type caGenFlags struct {
	dir          string
	intermediate bool
	keyType      string
	commonName   string
	validity     string
}

func (f *caGenFlags) register(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "CA directory; required")
	fl.BoolVar(&f.intermediate, "intermediate", false, "also create an intermediate CA under the root; the issuer signs with it and the root key can be kept offline")
	fl.StringVar(&f.keyType, "key-type", string(ca.KeyTypeP256), fmt.Sprintf("key type of the %s: %s", what, keyTypeList()))
	fl.StringVar(&f.commonName, "common-name", "", `common name of the root (default "`+ca.DefaultRootCommonName+` <date> <key id>")`)
	fl.StringVar(&f.validity, "validity", "10y", `lifetime of the `+what+`: a number of years ("10y"), days ("90d") or a Go duration ("8760h")`)
}

func keyTypeList() string {
	var names []string
	for _, k := range ca.KeyTypes {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// options turns the flags into ca.InitOptions.
func (f *caGenFlags) options() (ca.InitOptions, error) {
	if f.dir == "" {
		return ca.InitOptions{}, usageErrorf("--dir is required: the CA directory")
	}
	validity, err := parseValidity(f.validity)
	if err != nil {
		return ca.InitOptions{}, usageErrorf("--validity %q: %v", f.validity, err)
	}
	kt := ca.KeyType(f.keyType)
	valid := false
	for _, k := range ca.KeyTypes {
		valid = valid || k == kt
	}
	if !valid {
		return ca.InitOptions{}, usageErrorf("--key-type %q: want one of %s", f.keyType, keyTypeList())
	}
	return ca.InitOptions{KeyType: kt, CommonName: f.commonName, Validity: validity, Intermediate: f.intermediate}, nil
}

// parseValidity reads "10y" (365-day years), "90d" or a Go duration; it must be positive
// and at most 100 years.
func parseValidity(s string) (time.Duration, error) {
	const day, year = 24 * time.Hour, 365 * 24 * time.Hour
	var d time.Duration
	switch {
	case strings.HasSuffix(s, "y") || strings.HasSuffix(s, "d"):
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil {
			return 0, fmt.Errorf("want a whole number before %q", s[len(s)-1:])
		}
		unit := day
		if strings.HasSuffix(s, "y") {
			unit = year
		}
		if n > 100*365 {
			return 0, fmt.Errorf("longer than 100 years")
		}
		d = time.Duration(n) * unit
	default:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf(`want "10y", "90d" or a Go duration such as "8760h"`)
		}
	}
	if d <= 0 || d > 100*year {
		return 0, fmt.Errorf("want a lifetime above zero and at most 100 years")
	}
	return d, nil
}

func newIssuerCAInitCmd() *cobra.Command {
	var f caGenFlags
	cmd := &cobra.Command{
		Use:   "init --dir DIR [--intermediate] [--key-type p256|p384|rsa2048|rsa4096] [--common-name CN] [--validity 10y]",
		Short: "Create a root CA, or a root and an intermediate, in a new directory",
		Long: `Create a CA for the issuer in DIR (created with mode 0700 if missing):

  ca.key.pem             root private key (PKCS#8), mode 0600
  ca.cert.pem            root certificate, 0644
  intermediate.key.pem   with --intermediate: intermediate private key, 0600
  intermediate.cert.pem  with --intermediate: intermediate certificate, 0644
  roots.pem              the trusted roots to distribute to relying parties, 0644

Nothing is ever overwritten: if any of these files exists, init stops before generating
anything. With --intermediate the issuer signs with the intermediate, and ca.key.pem can
be moved offline (it is needed again only to rotate the intermediate).

Exit status: 0 when the CA was created; 2 when it was not (bad flags, existing files, a
write error).`,
		Example: `  athenz-mesh issuer ca init --dir /var/lib/athenz-mesh/ca
  athenz-mesh issuer ca init --dir ca --intermediate --key-type p384 --common-name "Example Root CA" --validity 20y`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			if err := ca.Init(f.dir, opts); err != nil {
				return failed(err)
			}
			return reportDir(cmd.OutOrStdout(), f.dir, "created a CA in "+f.dir,
				"Next: give the issuer this directory, and distribute roots.pem to every relying party.")
		},
	}
	f.register(cmd, "root (and intermediate)")
	return cmd
}

type rotateFlags struct {
	caGenFlags
	promote, finish bool
}

func newIssuerCARotateCmd() *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "rotate --dir DIR [--promote | --finish] [--key-type ...] [--common-name CN] [--validity 10y] [--intermediate]",
		Short: "Replace the root CA with an overlap: prepare, then --promote, then --finish",
		Long: `Rotate the root of a CA directory made by 'init', in three steps, so that no certificate
ever stops verifying:

  rotate --dir DIR            create the next root (ca.next.key.pem, ca.next.cert.pem, and an
                              intermediate under it if the CA has one or --intermediate is
                              given) and add it to roots.pem. The issuer still signs with the
                              current key. Distribute roots.pem to every relying party.
  rotate --dir DIR --promote  once everyone trusts the new root: check the next CA loads,
                              move the current files to ca.prev.* and the next ones into
                              place. Restart the issuer: it signs under the new root.
  rotate --dir DIR --finish   once every certificate issued under the old root has expired
                              (the issuer's maximum certificate lifetime after the
                              promotion): drop the old root from roots.pem and delete the
                              ca.prev.* files.

Keys are created 0600 and never overwritten. See docs/issuer-ca.md for the procedure.

Exit status: 0 when the step was done; 2 when it was not (bad flags, a step out of order,
an existing file, a next CA that does not load).`,
		Example: `  athenz-mesh issuer ca rotate --dir /var/lib/athenz-mesh/ca
  athenz-mesh issuer ca rotate --dir /var/lib/athenz-mesh/ca --promote
  athenz-mesh issuer ca rotate --dir /var/lib/athenz-mesh/ca --finish`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRotate(cmd, cmd.OutOrStdout(), f)
		},
	}
	f.register(cmd, "new root")
	cmd.Flags().BoolVar(&f.promote, "promote", false, "step 2: sign under the prepared root (the old root stays trusted)")
	cmd.Flags().BoolVar(&f.finish, "finish", false, "step 3: stop trusting the old root and delete its files")
	return cmd
}

func runRotate(cmd *cobra.Command, stdout io.Writer, f rotateFlags) error {
	if f.dir == "" {
		return usageErrorf("--dir is required: the CA directory")
	}
	if f.promote && f.finish {
		return usageErrorf("--promote and --finish are separate steps; give one")
	}
	if f.promote || f.finish {
		for _, name := range []string{"key-type", "common-name", "validity", "intermediate"} {
			if cmd.Flags().Changed(name) {
				return usageErrorf("--%s applies to the first step only (rotate without --promote or --finish)", name)
			}
		}
	}
	switch {
	case f.promote:
		if err := ca.PromoteRotation(f.dir, nil); err != nil {
			return failed(err)
		}
		return reportDir(stdout, f.dir, "promoted the new root in "+f.dir+"; the old root's files are now ca.prev.*",
			"Next: restart the issuer so that it signs under the new root. Once every certificate issued\n"+
				"under the old root has expired (the issuer's maximum certificate lifetime from now), run\n"+
				"  athenz-mesh issuer ca rotate --dir "+f.dir+" --finish")
	case f.finish:
		if err := ca.FinishRotation(f.dir); err != nil {
			return failed(err)
		}
		return reportDir(stdout, f.dir, "finished the rotation in "+f.dir+": roots.pem no longer trusts the old root",
			"Next: distribute roots.pem to every relying party.")
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	if err := ca.Rotate(f.dir, opts); err != nil {
		return failed(err)
	}
	return reportDir(stdout, f.dir, "prepared a new root in "+f.dir+" (ca.next.*); roots.pem now trusts both roots",
		"Next: distribute roots.pem to every relying party; the issuer still signs with the current key.\n"+
			"Once every relying party trusts the new root, run\n"+
			"  athenz-mesh issuer ca rotate --dir "+f.dir+" --promote")
}

type showFlags struct {
	dir string
}

func newIssuerCAShowCmd() *cobra.Command {
	var f showFlags
	cmd := &cobra.Command{
		Use:   "show (--dir DIR | FILE.pem...)",
		Short: "Print subject, key type, validity and fingerprints of CA certificates",
		Long: `Print every certificate of a CA directory (--dir) or of PEM files: subject, issuer, key
type, CA constraints, serial, validity and SHA-256 and SHA-1 fingerprints.

With --dir, also load the CA as the issuer would (key file mode, key matching the
certificate, chain verifying to a root in roots.pem, expiry) and report the result, any
warnings, and how far a root rotation has gone.

Exit status: 0 when the certificates were printed (and, with --dir, the CA loads); 1 when
the CA in --dir cannot issue (the reason is printed); 2 when the command could not run
(bad flags, unreadable or invalid files).`,
		Example: `  athenz-mesh issuer ca show --dir /var/lib/athenz-mesh/ca
  athenz-mesh issuer ca show roots.pem`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShow(cmd.OutOrStdout(), f, args)
		},
	}
	cmd.Flags().StringVar(&f.dir, "dir", "", "CA directory made by 'init' to show and check")
	return cmd
}

func runShow(stdout io.Writer, f showFlags, files []string) error {
	switch {
	case f.dir == "" && len(files) == 0:
		return usageErrorf("give --dir DIR or one or more PEM files")
	case f.dir != "" && len(files) > 0:
		return usageErrorf("give --dir DIR or PEM files, not both")
	case f.dir != "":
		return showDir(stdout, f.dir)
	}
	for _, path := range files {
		if err := showFile(stdout, path); err != nil {
			return failed(err)
		}
	}
	return nil
}

// showFile prints every certificate of a PEM file.
func showFile(w io.Writer, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i, c := range certs {
		name := path
		if len(certs) > 1 {
			name = fmt.Sprintf("%s [%d of %d]", path, i+1, len(certs))
		}
		printCert(w, name, c)
	}
	return nil
}

// showDir prints the certificates of a CA directory and whether the CA loads.
func showDir(w io.Writer, dir string) error {
	shown := 0
	for _, base := range []string{ca.RootCertFile, ca.IntermediateCertFile, "ca.next.cert.pem", "intermediate.next.cert.pem",
		"ca.prev.cert.pem", "intermediate.prev.cert.pem", ca.RootsBundleFile} {
		path := filepath.Join(dir, base)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		if err := showFile(w, path); err != nil {
			return failed(err)
		}
		shown++
	}
	if shown == 0 {
		return failed(fmt.Errorf("%s holds no CA certificate (%s); create one with 'athenz-mesh issuer ca init --dir %s'", dir, ca.RootCertFile, dir))
	}
	switch ca.RotationStage(dir) {
	case ca.RotationPrepared:
		fmt.Fprintln(w, "rotation: prepared: the next root is trusted but not signing; run 'rotate --promote' once every relying party has roots.pem")
	case ca.RotationPromoted:
		fmt.Fprintln(w, "rotation: promoted: the old root is still trusted; run 'rotate --finish' once its certificates have expired")
	}
	cfg := ca.DirConfig(dir)
	authority, err := ca.Load(cfg)
	if err != nil {
		fmt.Fprintf(w, "status: cannot issue: %v\n", err)
		return answerNo(nil)
	}
	fmt.Fprintln(w, loadSummary(authority, cfg))
	for _, warning := range authority.Warnings() {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	return nil
}

// loadSummary says what a loaded CA signs with and trusts.
func loadSummary(authority *ca.CA, cfg ca.Config) string {
	return fmt.Sprintf("status: OK: signs with %s (%s), chain of %d to root %q, %d trusted root(s) in %s",
		filepath.Base(cfg.CertFile), ca.DescribeKey(authority.Certificate().PublicKey), len(authority.Chain()),
		authority.Root().Subject.String(), len(authority.Roots()), filepath.Base(cfg.RootsFile))
}

// reportDir prints what a step did, the CA it left, and what to do next.
func reportDir(w io.Writer, dir, done, next string) error {
	fmt.Fprintln(w, done)
	for _, base := range []string{ca.RootKeyFile, ca.RootCertFile, ca.IntermediateKeyFile, ca.IntermediateCertFile,
		"ca.next.key.pem", "ca.next.cert.pem", "intermediate.next.key.pem", "intermediate.next.cert.pem",
		"ca.prev.key.pem", "ca.prev.cert.pem", "intermediate.prev.key.pem", "intermediate.prev.cert.pem", ca.RootsBundleFile} {
		if fi, err := os.Stat(filepath.Join(dir, base)); err == nil {
			fmt.Fprintf(w, "  %04o  %s\n", fi.Mode().Perm(), base)
		}
	}
	cfg := ca.DirConfig(dir)
	if authority, err := ca.Load(cfg); err == nil {
		fmt.Fprintln(w, loadSummary(authority, cfg))
		root := authority.Root()
		fmt.Fprintf(w, "root SHA-256 fingerprint: %s\n", fingerprint(sha256Sum(root.Raw)))
	} else {
		fmt.Fprintf(w, "status: cannot issue: %v\n", err)
	}
	fmt.Fprintln(w, next)
	return nil
}

// printCert prints one certificate's identity, key, constraints, validity and
// fingerprints.
func printCert(w io.Writer, name string, c *x509.Certificate) {
	issuer := c.Issuer.String()
	if c.CheckSignatureFrom(c) == nil {
		issuer = "(self-signed)"
	}
	constraint := "no (end entity)"
	if c.BasicConstraintsValid && c.IsCA {
		switch {
		case c.MaxPathLen == 0 && c.MaxPathLenZero:
			constraint = "yes, signs end-entity certificates only (path length 0)"
		case c.MaxPathLen > 0:
			constraint = fmt.Sprintf("yes, path length %d", c.MaxPathLen)
		default:
			constraint = "yes, path length unlimited"
		}
	}
	now := time.Now()
	left := "expired"
	if d := c.NotAfter.Sub(now); d > 0 {
		left = fmt.Sprintf("%d days left", d/(24*time.Hour))
	}
	if now.Before(c.NotBefore) {
		left = "not valid yet"
	}
	fmt.Fprintf(w, "%s:\n", name)
	fmt.Fprintf(w, "  subject:     %s\n", c.Subject)
	fmt.Fprintf(w, "  issuer:      %s\n", issuer)
	fmt.Fprintf(w, "  key:         %s\n", ca.DescribeKey(c.PublicKey))
	fmt.Fprintf(w, "  CA:          %s\n", constraint)
	fmt.Fprintf(w, "  serial:      %s\n", hex.EncodeToString(c.SerialNumber.Bytes()))
	fmt.Fprintf(w, "  valid:       %s to %s (%s)\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), left)
	fmt.Fprintf(w, "  SHA-256:     %s\n", fingerprint(sha256Sum(c.Raw)))
	fmt.Fprintf(w, "  SHA-1:       %s\n", fingerprint(sha1Sum(c.Raw)))
}

// fingerprint formats a digest as colon-separated upper-case hex, as openssl prints it.
func fingerprint(d []byte) string {
	var b strings.Builder
	for i, x := range d {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func sha1Sum(b []byte) []byte { h := sha1.Sum(b); return h[:] }
