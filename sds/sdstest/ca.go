// Package sdstest holds helpers for testing and benchmarking the agent: a throwaway CA
// that issues Athenz-style certificates, and SDS clients that behave as Envoy does. It
// does not import package sds, so sds's own tests can use it.
package sdstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"sync/atomic"
	"time"
)

// CA is a certificate authority generated at test time (ECDSA P-256). It is safe for
// concurrent use.
type CA struct {
	// Cert is the self-signed root.
	Cert *x509.Certificate
	// Key is the root's key.
	Key crypto.Signer

	serial atomic.Int64
}

// NewCA returns a new root CA named cn, valid for a day around now.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"athenz-mesh test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key}
	ca.serial.Store(1)
	return ca, nil
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	// Cert is the issued certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key crypto.Signer
	// Chain is Cert alone: the CA is a root, which travels in the bundle.
	Chain []*x509.Certificate
}

// Issue returns a service certificate for principal "<domain>.<service>" (the CN) with
// the given SPIFFE ID as its URI SAN ("" for none), valid for ttl from an hour ago.
func (ca *CA) Issue(principal, spiffeID string, ttl time.Duration) (*Leaf, error) {
	return ca.issue(pkix.Name{CommonName: principal}, spiffeID, ttl)
}

// IssueRole returns a role certificate: CN "<domain>:role.<role>", the role URI
// athenz://role/<domain>/<role> and athenz://principal/<principal>.
func (ca *CA) IssueRole(principal, domain, role string, ttl time.Duration) (*Leaf, error) {
	l, err := ca.issue(pkix.Name{CommonName: domain + ":role." + role}, "", ttl,
		"athenz://role/"+domain+"/"+role, "athenz://principal/"+principal)
	return l, err
}

func (ca *CA) issue(subject pkix.Name, spiffeID string, ttl time.Duration, extraURIs ...string) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var uris []*url.URL
	if spiffeID != "" {
		extraURIs = append([]string{spiffeID}, extraURIs...)
	}
	for _, s := range extraURIs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		uris = append(uris, u)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ttl),
		URIs:         uris,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}, nil
}
