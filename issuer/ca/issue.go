package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"time"
)

// ErrCAExpired is returned by Issue when the signing chain has expired since Load, so no
// valid certificate can be issued until a new CA is loaded.
var ErrCAExpired = errors.New("CA certificate chain has expired")

// IssueRequest is exactly what goes into a certificate besides what the CA decides
// (serial, validity dates, key usages, key identifiers, issuer). It is built by
// CheckServiceCSR or CheckRoleCSR from checked names; Issue trusts it and copies it into
// the certificate verbatim, so code that builds one by hand takes over their duty.
type IssueRequest struct {
	// PublicKey is the certificate's key, from the CSR. It must pass the CSR key rules
	// (ECDSA P-256/P-384, RSA 2048 to 8192 bits).
	PublicKey crypto.PublicKey
	// CommonName is the subject CN: the principal or the role name. Required.
	CommonName string
	// Organization, OrganizationalUnit and Country are further subject attributes,
	// usually empty (SubjectPolicy).
	Organization       []string
	OrganizationalUnit []string
	Country            []string
	// DNSNames, URIs, EmailAddresses and IPAddresses are the subject alternative names.
	DNSNames       []string
	URIs           []*url.URL
	EmailAddresses []string
	IPAddresses    []net.IP
	// ClientAuthOnly limits extKeyUsage to clientAuth; false gives serverAuth and
	// clientAuth.
	ClientAuthOnly bool
	// Validity is the requested lifetime (the request's expiryTime). Zero: the CA's
	// Config.DefaultValidity. Negative is an error.
	Validity time.Duration
	// MaxValidity is a further cap for this request (a domain's serviceCertExpiryMins, a
	// role's certExpiryMins, a provider's limit). Zero: no cap beyond the CA's.
	MaxValidity time.Duration
}

// Issued is a signed certificate in the forms the issuer's APIs return.
type Issued struct {
	// Certificate is the parsed certificate.
	Certificate *x509.Certificate
	// DER is its DER encoding (Certificate.Raw).
	DER []byte
	// CertPEM is the certificate alone, PEM-encoded.
	CertPEM []byte
	// ChainPEM is the CA chain between the certificate and the root (CA.ChainPEM): the
	// signing certificate and intermediates, leaf and root excluded; empty when the CA
	// signs with its root. It is shared between calls: read it, never modify it.
	ChainPEM []byte
	// SerialDecimal and SerialHex are the serial number in decimal (as Athenz certificate
	// records store it) and in lower-case hex of its big-endian bytes.
	SerialDecimal string
	SerialHex     string
}

// Issue signs a certificate for req, which must have been checked (see IssueRequest). The
// profile (docs/issuer-ca.md):
//
//   - serial: 160 random bits from Config.Rand with the top bit cleared, never zero;
//   - NotBefore: now minus Config.Backdate; NotAfter: now plus the least of
//     req.Validity (or Config.DefaultValidity), req.MaxValidity, Config.MaxValidity, and
//     never after the CA chain's own expiry; both truncated to the second;
//   - keyUsage digitalSignature, plus keyEncipherment for RSA keys; extKeyUsage
//     serverAuth and clientAuth, or clientAuth alone with req.ClientAuthOnly;
//   - basicConstraints CA:false; subjectKeyIdentifier (RFC 7093 method 1 over the key)
//     and authorityKeyIdentifier (the CA's subjectKeyIdentifier);
//   - signature: ECDSA with SHA-256 (P-256 CA key) or SHA-384 (P-384), or SHA-256 with
//     RSA, matching the CA key.
//
// Issue is safe for concurrent use. It does no parsing of the CA, only signing.
func (ca *CA) Issue(req IssueRequest) (*Issued, error) {
	if req.CommonName == "" {
		return nil, errors.New("issue: empty common name")
	}
	if err := checkLeafKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	if req.Validity < 0 || req.MaxValidity < 0 {
		return nil, fmt.Errorf("issue: negative validity %s or cap %s", req.Validity, req.MaxValidity)
	}
	now := ca.now()
	notAfter, err := ca.notAfterFor(now, req)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial(ca.rand)
	if err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	skid, err := keyID(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	ext := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if req.ClientAuthOnly {
		ext = ext[1:]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         req.CommonName,
			Organization:       req.Organization,
			OrganizationalUnit: req.OrganizationalUnit,
			Country:            req.Country,
		},
		NotBefore:             now.Add(-ca.backdate).Truncate(time.Second),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           ext,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		AuthorityKeyId:        ca.akid,
		DNSNames:              req.DNSNames,
		URIs:                  req.URIs,
		EmailAddresses:        req.EmailAddresses,
		IPAddresses:           req.IPAddresses,
		SignatureAlgorithm:    ca.sigAlg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, req.PublicKey, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("issue: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue: parse the signed certificate: %w", err)
	}
	return &Issued{
		Certificate:   cert,
		DER:           der,
		CertPEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ChainPEM:      ca.chainPEM[:len(ca.chainPEM):len(ca.chainPEM)],
		SerialDecimal: serial.String(),
		SerialHex:     hex.EncodeToString(serial.Bytes()),
	}, nil
}

// notAfterFor applies the validity rules of Issue.
func (ca *CA) notAfterFor(now time.Time, req IssueRequest) (time.Time, error) {
	validity := req.Validity
	if validity == 0 {
		validity = ca.defaultValidity
	}
	validity = min(validity, ca.maxValidity)
	if req.MaxValidity > 0 {
		validity = min(validity, req.MaxValidity)
	}
	notAfter := now.Add(validity).Truncate(time.Second)
	if notAfter.After(ca.notAfter) {
		notAfter = ca.notAfter
	}
	if !notAfter.After(now) {
		return time.Time{}, fmt.Errorf("issue: %w on %s", ErrCAExpired, ca.notAfter.UTC().Format(time.RFC3339))
	}
	return notAfter, nil
}

// randomSerial returns a positive serial of 160 random bits with the top bit cleared, so
// that its DER encoding never exceeds the 20 octets RFC 5280 allows. Collisions are not
// checked: at 2^159 values, a billion certificates collide with probability below 2^-99.
func randomSerial(r io.Reader) (*big.Int, error) {
	var b [20]byte
	for range 4 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		b[0] &= 0x7f
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
	return nil, errors.New("serial number: the random source returns only zeros")
}
