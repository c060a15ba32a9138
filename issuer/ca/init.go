package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// KeyType is the kind of key Init and Rotate generate.
type KeyType string

// The key types Init and Rotate generate.
const (
	// KeyTypeP256 is ECDSA on P-256, signing with SHA-256: the default, and the fastest to
	// issue with (about ten times faster than RSA-2048).
	KeyTypeP256 KeyType = "p256"
	// KeyTypeP384 is ECDSA on P-384, signing with SHA-384.
	KeyTypeP384 KeyType = "p384"
	// KeyTypeRSA2048 is RSA with a 2048-bit modulus, signing with SHA-256.
	KeyTypeRSA2048 KeyType = "rsa2048"
	// KeyTypeRSA4096 is RSA with a 4096-bit modulus, signing with SHA-256.
	KeyTypeRSA4096 KeyType = "rsa4096"
)

// KeyTypes lists the valid KeyType values, for flag help.
var KeyTypes = []KeyType{KeyTypeP256, KeyTypeP384, KeyTypeRSA2048, KeyTypeRSA4096}

// GenerateKey makes a new private key of type t ("" means KeyTypeP256).
func (t KeyType) GenerateKey() (crypto.Signer, error) {
	switch t {
	case KeyTypeP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("key type %q: want one of %v", string(t), KeyTypes)
}

// Defaults of InitOptions.
const (
	// DefaultCAValidity is the lifetime of a generated root (and intermediate): ten years
	// of 365 days.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultRootCommonName and DefaultIntermediateCommonName start the default CNs; the
	// creation date and six hex digits of the key identifier are appended, so that the
	// old and the new root of a rotation differ.
	DefaultRootCommonName         = "athenz-mesh root CA"
	DefaultIntermediateCommonName = "athenz-mesh intermediate CA"
	// caBackdate is how far before creation a generated CA certificate's NotBefore lies,
	// so relying parties with slow clocks accept certificates issued at once.
	caBackdate = time.Hour
)

// InitOptions says what Init and Rotate generate. The zero value makes a P-256 root valid
// for ten years.
type InitOptions struct {
	// KeyType of the generated keys. Empty: KeyTypeP256.
	KeyType KeyType
	// CommonName of the root. Empty: DefaultRootCommonName, the creation date and six
	// hex digits of the key identifier, e.g. "athenz-mesh root CA 2026-05-01 3f09a2".
	CommonName string
	// IntermediateCommonName of the intermediate. Empty: DefaultIntermediateCommonName,
	// the date and key identifier digits, as for CommonName.
	IntermediateCommonName string
	// Validity of the root; the intermediate gets the same, ending no later than the root.
	// Zero: DefaultCAValidity (ten years).
	Validity time.Duration
	// Intermediate also creates an intermediate CA signed by the root; the issuer then
	// signs with the intermediate and the root key can be kept offline. Rotate keeps an
	// intermediate when the current layout has one, whatever this says.
	Intermediate bool
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// generated is a key and certificate made by Init or Rotate, in file form.
type generated struct {
	cert           *x509.Certificate
	key            crypto.Signer
	keyPEM, crtPEM []byte
}

// newCAPair generates a root (parent nil) or an intermediate signed by parent. An empty
// cn becomes defaultCN, the date and the first six hex digits of the key identifier, so
// that two roots made the same day differ.
func newCAPair(opts InitOptions, cn, defaultCN string, parent *generated) (*generated, error) {
	key, err := opts.KeyType.GenerateKey()
	if err != nil {
		return nil, err
	}
	if cn == "" {
		id, err := keyID(key.Public())
		if err != nil {
			return nil, err
		}
		cn = fmt.Sprintf("%s %s %x", defaultCN, opts.Now().UTC().Format("2006-01-02"), id[:3])
	}
	serial, err := randomSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	sigAlg, err := signatureAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-caBackdate).Truncate(time.Second),
		NotAfter:              now.Add(validity).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true // signs end-entity certificates only
		if tmpl.NotAfter.After(parent.cert.NotAfter) {
			tmpl.NotAfter = parent.cert.NotAfter
		}
		signer, parentCert = parent.key, parent.cert
		if sigAlg, err = signatureAlgorithm(parent.key.Public()); err != nil {
			return nil, err
		}
	}
	tmpl.SignatureAlgorithm = sigAlg
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &generated{
		cert:   cert,
		key:    key,
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		crtPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// generateLayout makes a root and, when intermediate is set, an intermediate under it,
// and returns the files of the slot by name, and the root.
func generateLayout(opts InitOptions, intermediate bool, slot string) (map[string][]byte, *generated, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	root, err := newCAPair(opts, opts.CommonName, DefaultRootCommonName, nil)
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{
		slotFile(RootKeyFile, slot):  root.keyPEM,
		slotFile(RootCertFile, slot): root.crtPEM,
	}
	if intermediate {
		inter, err := newCAPair(opts, opts.IntermediateCommonName, DefaultIntermediateCommonName, root)
		if err != nil {
			return nil, nil, err
		}
		files[slotFile(IntermediateKeyFile, slot)] = inter.keyPEM
		files[slotFile(IntermediateCertFile, slot)] = inter.crtPEM
	}
	return files, root, nil
}

// fileMode is the mode of a layout file: 0600 for keys, 0644 for certificates.
func fileMode(name string) os.FileMode {
	if isKeyFile(name) {
		return 0o600
	}
	return 0o644
}

func isKeyFile(name string) bool { return strings.HasSuffix(name, ".key.pem") }

// writeLayout writes generated files into dir, keys first, never overwriting; extra
// files (the roots bundle) are written after them. Everything written is removed again if
// any write fails.
func writeLayout(dir string, files map[string][]byte, extra map[string][]byte) error {
	var w newFiles
	for _, group := range []map[string][]byte{files, extra} {
		for _, base := range orderedNames(group) {
			if err := w.write(filepath.Join(dir, base), group[base], fileMode(base)); err != nil {
				w.rollback()
				return err
			}
		}
	}
	return nil
}

// orderedNames returns the names of a file map, keys before certificates, sorted.
func orderedNames(files map[string][]byte) []string {
	var keys, others []string
	for name := range files {
		if isKeyFile(name) {
			keys = append(keys, name)
		} else {
			others = append(others, name)
		}
	}
	slices.Sort(keys)
	slices.Sort(others)
	return append(keys, others...)
}

// Init creates a new CA in dir, which is created (mode 0700) if missing:
//
//	ca.key.pem             root private key, PKCS#8, mode 0600
//	ca.cert.pem            root certificate, mode 0644
//	intermediate.key.pem   with opts.Intermediate: intermediate private key, 0600
//	intermediate.cert.pem  with opts.Intermediate: intermediate certificate, 0644
//	roots.pem              the roots bundle to distribute (the root), 0644
//
// Init never overwrites: if any of these files exists it fails before generating
// anything, and every file is created with O_EXCL, so a concurrent run cannot be
// clobbered either. The root has basicConstraints CA:true with no path length limit, the
// intermediate path length 0; both keyUsage keyCertSign and cRLSign, NotBefore one hour
// in the past. Load(DirConfig(dir)) then loads the CA.
func Init(dir string, opts InitOptions) error {
	if dir == "" {
		return errors.New("init CA: no directory given")
	}
	for _, base := range slices.Concat(layoutFiles, []string{RootsBundleFile}) {
		if p := filepath.Join(dir, base); exists(p) {
			return fmt.Errorf("init CA: %s already exists; init never overwrites a CA (to replace a root, use rotate)", p)
		}
	}
	files, root, err := generateLayout(opts, opts.Intermediate, slotCurrent)
	if err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	if err := writeLayout(dir, files, map[string][]byte{RootsBundleFile: root.crtPEM}); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	return nil
}
