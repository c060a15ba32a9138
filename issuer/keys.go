package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/internal/atomicfile"
)

// signingKey is one of the issuer's signing keys with everything published about it,
// precomputed: the PublicKeyEntry form, the JWKs in both curve spellings, and the JWS
// algorithm.
type signingKey struct {
	id     string
	signer crypto.Signer
	pub    crypto.PublicKey
	entry  string // ybase64 of the PEM public key
	jwkRFC athenz.JWK
	jwkSSL athenz.JWK
	alg    string // ES256, ES384, ES512 or RS256
}

// newSigningKey precomputes the published forms of signer's public key.
func newSigningKey(signer crypto.Signer, id string) (*signingKey, error) {
	pub := signer.Public()
	entry, err := athenz.EncodePublicKeyEntry(pub)
	if err != nil {
		return nil, err
	}
	rfc, err := athenz.JWKFromPublicKey(pub, id, true)
	if err != nil {
		return nil, err
	}
	ssl, err := athenz.JWKFromPublicKey(pub, id, false)
	if err != nil {
		return nil, err
	}
	return &signingKey{id: id, signer: signer, pub: pub, entry: entry, jwkRFC: rfc, jwkSSL: ssl, alg: rfc.Alg}, nil
}

// jwk returns the key as a JWK, with the RFC curve name when rfc is set.
func (k *signingKey) jwk(rfc bool) athenz.JWK {
	if rfc {
		return k.jwkRFC
	}
	return k.jwkSSL
}

// loadOrCreateKey reads the PEM private key at path, or, when the file does not exist
// and create is set, generates an ECDSA P-256 key there (mode 0600, in a directory
// created 0700) and, when pubPath is set, writes its public key beside it.
func loadOrCreateKey(path, id string, create bool, pubPath string) (*signingKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		signer, err := athenz.ParsePrivateKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		k, err := newSigningKey(signer, id)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		if pubPath != "" {
			if err := writePublicKey(pubPath, k.pub); err != nil {
				return nil, err
			}
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist) || !create:
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	_, werr := f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	k, err := newSigningKey(key, id)
	if err != nil {
		return nil, err
	}
	if pubPath != "" {
		if err := writePublicKey(pubPath, k.pub); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// writePublicKey writes pub as a PEM "PUBLIC KEY" file (0644) unless it already holds it.
func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("public key %s: %w", path, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	return nil
}

// pubPathFor names the public key file beside a generated private key file:
// bundle.key.pem → bundle.pub.pem.
func pubPathFor(keyPath string) string {
	if s, ok := strings.CutSuffix(keyPath, ".key.pem"); ok {
		return s + ".pub.pem"
	}
	return keyPath + ".pub"
}
