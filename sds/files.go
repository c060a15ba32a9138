package sds

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/internal/atomicfile"
)

// Default file modes of the SIA file layout.
const (
	DefaultKeyFileMode  fs.FileMode = 0o600
	DefaultCertFileMode fs.FileMode = 0o644
	DefaultFilesDirMode fs.FileMode = 0o755
)

// FilesConfig configures Files.
type FilesConfig struct {
	// Dir is the root of the layout (SIA's /var/lib/sia). Required.
	Dir string
	// KeyMode is the mode of key files. Zero: DefaultKeyFileMode (0600). 0440 or 0640
	// let a group (the application's) read them; modes with any "other" bit are refused.
	KeyMode fs.FileMode
	// CertMode is the mode of certificate files. Zero: DefaultCertFileMode (0644).
	CertMode fs.FileMode
	// DirMode is the mode of the keys/ and certs/ directories the agent creates;
	// existing ones are not changed. Zero: DefaultFilesDirMode (0755).
	DirMode fs.FileMode
}

// Files writes credentials in Athenz SIA's file layout, for applications that read files
// rather than SDS:
//
//	<dir>/keys/<domain>.<service>.key.pem         the service key (KeyMode)
//	<dir>/certs/<domain>.<service>.cert.pem       the service certificate, then intermediates
//	<dir>/certs/ca.cert.pem                       the CA roots
//	<dir>/certs/<domain>:role.<role>.cert.pem     a role certificate (its key is the service key)
//
// Every file is replaced atomically (a temporary file in the same directory, written,
// synced, renamed over the old one, and the directory synced), so a reader sees the old
// file or the new one, never a mix. Keys are written as SIA writes them: RSA as PKCS#1
// "RSA PRIVATE KEY", ECDSA as SEC 1 "EC PRIVATE KEY". Safe for concurrent use (each
// write is one rename).
type Files struct {
	cfg FilesConfig
}

// NewFiles checks cfg and creates the keys/ and certs/ directories.
func NewFiles(cfg FilesConfig) (*Files, error) {
	if cfg.Dir == "" {
		return nil, errors.New("credential files: a directory is required")
	}
	if cfg.KeyMode == 0 {
		cfg.KeyMode = DefaultKeyFileMode
	}
	if cfg.CertMode == 0 {
		cfg.CertMode = DefaultCertFileMode
	}
	if cfg.DirMode == 0 {
		cfg.DirMode = DefaultFilesDirMode
	}
	if err := CheckKeyFileMode(cfg.KeyMode); err != nil {
		return nil, fmt.Errorf("credential files: %w", err)
	}
	for _, sub := range []string{"keys", "certs"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), cfg.DirMode); err != nil {
			return nil, fmt.Errorf("credential files: %w", err)
		}
	}
	return &Files{cfg: cfg}, nil
}

// CheckKeyFileMode refuses key file modes that are not plain permission bits, that give
// any access to other users, or that do not let the owner read.
func CheckKeyFileMode(mode fs.FileMode) error {
	if mode&^fs.ModePerm != 0 || mode&0o007 != 0 || mode&0o400 == 0 || mode&0o111 != 0 {
		return fmt.Errorf("key file mode %#o: want owner-readable, never executable or readable by others (0600, 0400, 0440, 0640)", uint32(mode))
	}
	return nil
}

// Dir returns the root directory.
func (f *Files) Dir() string { return f.cfg.Dir }

// KeyPath returns the key file of a service.
func (f *Files) KeyPath(domain, service string) string {
	return filepath.Join(f.cfg.Dir, "keys", athenz.Principal(domain, service)+".key.pem")
}

// CertPath returns the certificate file of a service.
func (f *Files) CertPath(domain, service string) string {
	return filepath.Join(f.cfg.Dir, "certs", athenz.Principal(domain, service)+".cert.pem")
}

// CAPath returns the CA certificate file.
func (f *Files) CAPath() string { return filepath.Join(f.cfg.Dir, "certs", "ca.cert.pem") }

// RoleCertPath returns the file of a role certificate.
func (f *Files) RoleCertPath(domain, role string) string {
	return filepath.Join(f.cfg.Dir, "certs", athenz.JoinRoleName(domain, role)+".cert.pem")
}

// WriteIdentity writes a service's key, then its certificate chain.
func (f *Files) WriteIdentity(domain, service string, cred *Credential) error {
	keyPEM, err := encodeKeyPEM(cred)
	if err != nil {
		return err
	}
	if err := writeAtomic(f.KeyPath(domain, service), keyPEM, f.cfg.KeyMode); err != nil {
		return err
	}
	return writeAtomic(f.CertPath(domain, service), encodeCertsPEM(cred.Chain), f.cfg.CertMode)
}

// WriteCA writes the CA roots.
func (f *Files) WriteCA(roots []*x509.Certificate) error {
	return writeAtomic(f.CAPath(), encodeCertsPEM(roots), f.cfg.CertMode)
}

// WriteRoleCert writes a role certificate chain; its key is the service key.
func (f *Files) WriteRoleCert(domain, role string, cred *Credential) error {
	return writeAtomic(f.RoleCertPath(domain, role), encodeCertsPEM(cred.Chain), f.cfg.CertMode)
}

// LoadIdentity reads a service's key and certificate back, checking they match and that
// the certificate names the service.
func (f *Files) LoadIdentity(domain, service string) (*Credential, error) {
	keyPEM, err := os.ReadFile(f.KeyPath(domain, service))
	if err != nil {
		return nil, err
	}
	key, err := athenz.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.KeyPath(domain, service), err)
	}
	certPEM, err := os.ReadFile(f.CertPath(domain, service))
	if err != nil {
		return nil, err
	}
	chain, err := parseCertsPEM(certPEM)
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("%s: no certificate (%v)", f.CertPath(domain, service), err)
	}
	if !keyMatches(chain[0], key) {
		return nil, fmt.Errorf("%s does not hold the certificate of the key in %s", f.CertPath(domain, service), f.KeyPath(domain, service))
	}
	if p := certPrincipal(chain[0]); p != athenz.Principal(domain, service) {
		return nil, fmt.Errorf("%s names %q, not %s", f.CertPath(domain, service), p, athenz.Principal(domain, service))
	}
	return &Credential{Chain: chain, Key: key}, nil
}

// LoadCA reads the CA roots back.
func (f *Files) LoadCA() ([]*x509.Certificate, error) {
	data, err := os.ReadFile(f.CAPath())
	if err != nil {
		return nil, err
	}
	return parseCertsPEM(data)
}

func encodeCertsPEM(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func encodeKeyPEM(cred *Credential) ([]byte, error) {
	switch k := cred.Key.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(cred.Key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeAtomic replaces path with data (internal/atomicfile: mode set before any byte is
// written, synced, renamed, directory synced).
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	return atomicfile.Write(path, data, mode)
}
