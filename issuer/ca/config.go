package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Defaults applied by Load to zero Config fields.
const (
	// DefaultBackdate is how far before the signing time NotBefore is set. Relying parties
	// whose clocks run a little behind the issuer's would otherwise reject a fresh
	// certificate as "not yet valid" for the first seconds or minutes of its life; five
	// minutes covers ordinary NTP drift without materially extending the lifetime (the
	// Java ZTS uses none, production Athenz signers one hour).
	DefaultBackdate = 5 * time.Minute
	// DefaultValidity is the lifetime given when a request asks for none: 24 hours, the
	// mesh default (athenz-compat.md, DESIGN.md).
	DefaultValidity = 24 * time.Hour
	// DefaultMaxValidity caps every certificate: 30 days, Athenz's own cap (43200 min).
	DefaultMaxValidity = 30 * 24 * time.Hour
	// DefaultExpiryWarning is how close to its expiry a CA certificate makes Load warn.
	DefaultExpiryWarning = 30 * 24 * time.Hour
)

// Config says where the CA's key and certificates are and how it issues. Every optional
// field documents what its zero value means, so the zero Config plus KeyFile and CertFile
// is a working configuration.
type Config struct {
	// KeyFile is the PEM private key the CA signs with: PKCS#8 "PRIVATE KEY", SEC 1 "EC
	// PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY", unencrypted; ECDSA P-256 or P-384, or RSA
	// of 2048 to 8192 bits. Required. The file must not be readable by group or others
	// (mode 0600 or 0400), unless AllowGroupReadableKey; Load refuses it otherwise and says
	// which chmod to run.
	KeyFile string
	// CertFile is the PEM certificate of KeyFile's key: a CA certificate (basicConstraints
	// CA:true, keyUsage keyCertSign). Required. Further certificates in the file (a
	// "full chain" file) are read as if they were in ChainFile.
	CertFile string
	// ChainFile holds PEM certificates linking CertFile to a root: intermediates, in any
	// order, optionally ending with the root. Empty: CertFile is a root, or is signed
	// directly by a root in RootsFile.
	ChainFile string
	// RootsFile is a PEM bundle of the roots relying parties trust. The CA's chain must
	// verify up to one of them, and all of them are published (Roots, RootsPEM): during a
	// root rotation the bundle holds the old and the new root, so certificates from either
	// verify. Empty: the roots are the self-signed certificates of CertFile and ChainFile.
	RootsFile string
	// AllowGroupReadableKey accepts a KeyFile readable by its group (never by others), for
	// Kubernetes secret volumes mounted with an fsGroup, which makes files group-readable.
	// Default false.
	AllowGroupReadableKey bool
	// Backdate is how far before the signing time NotBefore is set. Zero: DefaultBackdate
	// (5 minutes). Negative: no backdating.
	Backdate time.Duration
	// DefaultValidity is the lifetime of a certificate whose request asks for none. Zero:
	// DefaultValidity (24 hours). It is capped by MaxValidity.
	DefaultValidity time.Duration
	// MaxValidity caps the lifetime of every certificate, whatever the request asks. Zero:
	// DefaultMaxValidity (30 days). Certificates never outlive the CA's own chain either.
	MaxValidity time.Duration
	// ExpiryWarning is how close to its NotAfter a certificate of the chain (or a root)
	// makes Load add a warning. Zero: DefaultExpiryWarning (30 days).
	ExpiryWarning time.Duration
	// Now is the clock. Nil: time.Now. Tests inject a fixed clock.
	Now func() time.Time
	// Rand is the source of serial numbers; it must be safe for concurrent use. Nil:
	// crypto/rand.Reader. Signatures always use crypto/rand (Go ignores custom random
	// sources for signing since Go 1.26). Tests inject a deterministic reader.
	Rand io.Reader
}

// Load reads the CA described by cfg and checks it can issue:
//
//   - the key file is not group or world readable (see Config.KeyFile);
//   - the key is ECDSA P-256/P-384 or RSA 2048 to 8192 bits and matches CertFile;
//   - CertFile and every intermediate is a CA certificate with keyCertSign, valid now,
//     and not restricted to extended key usages that exclude serverAuth or clientAuth;
//   - the chain verifies up to a root (Config.RootsFile), every root is a CA certificate.
//
// Certificates of the chain, and roots, that expire within ExpiryWarning are reported by
// Warnings rather than refused; an expired chain is refused, an expired extra root only
// warned about. Errors name the file and say what to do.
func Load(cfg Config) (*CA, error) {
	if cfg.KeyFile == "" || cfg.CertFile == "" {
		return nil, errors.New("CA config: key file and certificate file are required")
	}
	if err := checkKeyFileMode(cfg.KeyFile, cfg.AllowGroupReadableKey); err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	key, err := athenz.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", cfg.KeyFile, err)
	}
	certs, err := readCertsFile(cfg.CertFile)
	if err != nil {
		return nil, err
	}
	chain := certs[1:]
	if cfg.ChainFile != "" {
		more, err := readCertsFile(cfg.ChainFile)
		if err != nil {
			return nil, err
		}
		chain = append(chain, more...)
	}
	var roots []*x509.Certificate
	if cfg.RootsFile != "" {
		if roots, err = readCertsFile(cfg.RootsFile); err != nil {
			return nil, err
		}
	}
	ca, err := build(key, certs[0], chain, roots, cfg)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", cfg.CertFile, err)
	}
	return ca, nil
}

// checkKeyFileMode refuses a private key file that others (or, unless allowGroup, the
// file's group) can read. It follows symbolic links, as Kubernetes secret volumes use them.
func checkKeyFileMode(path string, allowGroup bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("CA key %s: not a regular file", path)
	}
	mask := os.FileMode(0o077)
	if allowGroup {
		mask = 0o007
	}
	if perm := fi.Mode().Perm(); perm&mask != 0 {
		want := perm &^ 0o077
		if allowGroup {
			want = perm &^ 0o027
		}
		return fmt.Errorf("CA key %s has mode %04o: a private key must not be readable by group or others; run: chmod %04o %s", path, perm, want, path)
	}
	return nil
}

// readCertsFile reads every PEM CERTIFICATE block of a file; other block types and text
// between blocks are refused, so a key pasted into a certificate file is noticed.
func readCertsFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificates: %w", err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificatesPEM parses a PEM bundle of one or more "CERTIFICATE" blocks. Any other
// block type (a private key, say) is an error, so that a key is never mistaken for, or
// published with, a certificate.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q; want only CERTIFICATE blocks", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}
