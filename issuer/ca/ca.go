package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// CA signs certificates with one key and publishes its chain and trusted roots. It is
// immutable after Load and safe for concurrent use; rotating the signing key means loading
// a new CA and swapping it in.
type CA struct {
	signer   crypto.Signer
	cert     *x509.Certificate   // the signing certificate
	chain    []*x509.Certificate // cert and intermediates up to, excluding, the root
	root     *x509.Certificate   // the root the chain verifies to
	roots    []*x509.Certificate // every published root, root first
	rootPool *x509.CertPool
	chainPEM []byte
	rootsPEM []byte
	sigAlg   x509.SignatureAlgorithm
	akid     []byte    // AuthorityKeyId of issued certificates
	notAfter time.Time // the earliest NotAfter of the chain: no certificate outlives it

	backdate, defaultValidity, maxValidity time.Duration
	now                                    func() time.Time
	rand                                   io.Reader
	warnings                               []string
}

// build checks the key, chain and roots and precomputes everything Issue needs.
func build(key crypto.Signer, cert *x509.Certificate, chain, roots []*x509.Certificate, cfg Config) (*CA, error) {
	ca := &CA{signer: key, cert: cert, now: cfg.Now, rand: cfg.Rand,
		backdate: cfg.Backdate, defaultValidity: cfg.DefaultValidity, maxValidity: cfg.MaxValidity}
	if ca.now == nil {
		ca.now = time.Now
	}
	if ca.rand == nil {
		ca.rand = rand.Reader
	}
	switch {
	case ca.backdate == 0:
		ca.backdate = DefaultBackdate
	case ca.backdate < 0:
		ca.backdate = 0
	}
	if ca.maxValidity <= 0 {
		ca.maxValidity = DefaultMaxValidity
	}
	if ca.defaultValidity <= 0 {
		ca.defaultValidity = DefaultValidity
	}
	ca.defaultValidity = min(ca.defaultValidity, ca.maxValidity)
	warnWithin := cfg.ExpiryWarning
	if warnWithin <= 0 {
		warnWithin = DefaultExpiryWarning
	}

	var err error
	if ca.sigAlg, err = signatureAlgorithm(key.Public()); err != nil {
		return nil, err
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the private key does not match the certificate's public key")
	}
	now := ca.now()
	if err := checkCACert(cert, "signing certificate", now, false); err != nil {
		return nil, err
	}
	if err := ca.buildChain(chain, roots, now); err != nil {
		return nil, err
	}
	for _, c := range ca.chain {
		if left := c.NotAfter.Sub(now); left < warnWithin {
			ca.warnings = append(ca.warnings, fmt.Sprintf("CA certificate %q expires on %s, in %s: rotate it (see docs/issuer-ca.md)", c.Subject, c.NotAfter.UTC().Format(time.RFC3339), untilText(left)))
		}
	}
	for _, r := range ca.roots {
		switch left := r.NotAfter.Sub(now); {
		case left <= 0:
			ca.warnings = append(ca.warnings, fmt.Sprintf("trusted root %q expired on %s: remove it from the roots file", r.Subject, r.NotAfter.UTC().Format(time.RFC3339)))
		case left < warnWithin:
			ca.warnings = append(ca.warnings, fmt.Sprintf("trusted root %q expires on %s, in %s: rotate it (see docs/issuer-ca.md)", r.Subject, r.NotAfter.UTC().Format(time.RFC3339), untilText(left)))
		}
	}
	ca.akid = cert.SubjectKeyId
	if len(ca.akid) == 0 {
		if ca.akid, err = keyID(cert.PublicKey); err != nil {
			return nil, err
		}
		ca.warnings = append(ca.warnings, "the CA certificate has no subjectKeyIdentifier; issued certificates carry a computed authorityKeyIdentifier")
	}
	for _, c := range ca.chain {
		ca.chainPEM = append(ca.chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	ca.rootPool = x509.NewCertPool()
	for _, r := range ca.roots {
		ca.rootPool.AddCert(r)
		ca.rootsPEM = append(ca.rootsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
	}
	return ca, nil
}

// buildChain verifies cert up to a root and records the chain, the roots and notAfter.
func (ca *CA) buildChain(chain, roots []*x509.Certificate, now time.Time) error {
	var anchors []*x509.Certificate
	for i, r := range roots {
		if !r.BasicConstraintsValid || !r.IsCA {
			return fmt.Errorf("trusted root %d (%q) is not a CA certificate (basicConstraints CA:true)", i+1, r.Subject)
		}
		anchors = appendCert(anchors, r)
	}
	intermediates := x509.NewCertPool()
	for _, c := range append([]*x509.Certificate{ca.cert}, chain...) {
		if isSelfSigned(c) {
			anchors = appendCert(anchors, c)
		} else if c != ca.cert {
			intermediates.AddCert(c)
		}
	}
	if len(anchors) == 0 {
		return errors.New("no root to verify the chain against: give a roots file, or a chain file that ends with the root")
	}
	pool := x509.NewCertPool()
	for _, a := range anchors {
		pool.AddCert(a)
	}
	chains, err := ca.cert.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("the chain does not verify up to a trusted root (check the chain and roots files): %w", err)
	}
	path := slices.MinFunc(chains, func(a, b []*x509.Certificate) int { return len(a) - len(b) })
	for i, c := range path[1:] {
		isRoot := i == len(path)-2
		what := fmt.Sprintf("chain certificate %d", i+1)
		if isRoot {
			what = "root"
		}
		if err := checkCACert(c, what, now, isRoot); err != nil {
			return err
		}
	}
	ca.root = path[len(path)-1]
	ca.chain = path[:len(path)-1]
	if len(path) == 1 && !isSelfSigned(ca.cert) {
		// The signing certificate is itself a trust anchor but not self-signed: relying
		// parties trust it directly, there is nothing to send between leaf and anchor.
		ca.chain = nil
	}
	ca.notAfter = path[0].NotAfter
	for _, c := range path {
		if c.NotAfter.Before(ca.notAfter) {
			ca.notAfter = c.NotAfter
		}
	}
	ca.roots = appendCert([]*x509.Certificate{ca.root}, anchors...)
	return nil
}

// untilText says how long until an expiry, for warnings: "12 days", "5h0m0s".
func untilText(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Minute).String()
}

// checkCACert checks one certificate of the signing chain. A root may lack the keyUsage
// extension altogether (older roots do), which leaves it unrestricted.
func checkCACert(c *x509.Certificate, what string, now time.Time, isRoot bool) error {
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return fmt.Errorf("%s %q is not a CA certificate (basicConstraints CA:true)", what, c.Subject)
	case c.KeyUsage&x509.KeyUsageCertSign == 0 && (c.KeyUsage != 0 || !isRoot):
		return fmt.Errorf("%s %q lacks keyUsage keyCertSign", what, c.Subject)
	case now.After(c.NotAfter):
		return fmt.Errorf("%s %q expired on %s", what, c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%s %q is not valid until %s (check the clock)", what, c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if len(c.ExtKeyUsage) > 0 && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) &&
		(!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
		return fmt.Errorf("%s %q restricts extended key usage without allowing both serverAuth and clientAuth, so certificates it issues would not verify", what, c.Subject)
	}
	return nil
}

// signatureAlgorithm picks the SHA-2 signature matching the CA key, refusing keys a CA
// may not have here.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
		return 0, fmt.Errorf("CA key: ECDSA curve %s; want P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < athenz.MinRSABits || bits > athenz.MaxRSABits {
			return 0, fmt.Errorf("CA key: RSA key of %d bits; want %d to %d", bits, athenz.MinRSABits, athenz.MaxRSABits)
		}
		return x509.SHA256WithRSA, nil
	}
	return 0, fmt.Errorf("CA key: %T; want ECDSA P-256/P-384 or RSA", pub)
}

// keyID computes a key identifier: the leftmost 160 bits of the SHA-256 hash of the
// subjectPublicKey bits (RFC 7093 section 2, method 1), as crypto/x509 does for CAs.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	var b []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var err error
		if b, err = k.Bytes(); err != nil {
			return nil, fmt.Errorf("key identifier: %w", err)
		}
	case *rsa.PublicKey:
		b = x509.MarshalPKCS1PublicKey(k)
	default:
		return nil, fmt.Errorf("key identifier: unsupported key %T", pub)
	}
	h := sha256.Sum256(b)
	return h[:20], nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// appendCert appends the certificates not already in list (compared by DER).
func appendCert(list []*x509.Certificate, certs ...*x509.Certificate) []*x509.Certificate {
	for _, c := range certs {
		if !slices.ContainsFunc(list, c.Equal) {
			list = append(list, c)
		}
	}
	return list
}

// Certificate returns the signing certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Chain returns the certificates a relying party needs between an issued certificate and
// the root: the signing certificate and any intermediates above it, signing certificate
// first, root excluded. It is empty when the CA signs with the root itself.
func (ca *CA) Chain() []*x509.Certificate { return slices.Clone(ca.chain) }

// Root returns the root the signing chain verifies to; Istio's CA API sends it last.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Roots returns every trusted root to publish (GET /cacerts, x509CertificateSigner, SDS
// ROOTCA, trust bundles), Root first. While a root is rotated it holds the old and new.
func (ca *CA) Roots() []*x509.Certificate { return slices.Clone(ca.roots) }

// RootPool returns a fresh pool of Roots, for verifying certificates this CA issued.
func (ca *CA) RootPool() *x509.CertPool { return ca.rootPool.Clone() }

// RootsPEM returns Roots as a PEM bundle.
func (ca *CA) RootsPEM() []byte { return slices.Clone(ca.rootsPEM) }

// ChainPEM returns Chain as PEM, "" when the CA signs with its root.
func (ca *CA) ChainPEM() []byte { return slices.Clone(ca.chainPEM) }

// NotAfter returns the earliest expiry of the signing chain: no certificate outlives it.
func (ca *CA) NotAfter() time.Time { return ca.notAfter }

// Warnings returns what Load found worth an operator's attention but not fatal: chain
// certificates or roots expiring within Config.ExpiryWarning, expired extra roots, a CA
// certificate without a subjectKeyIdentifier. The issuer logs them at start.
func (ca *CA) Warnings() []string { return slices.Clone(ca.warnings) }
