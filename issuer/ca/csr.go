package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// MaxCSRSize is the largest PEM CSR ParseCSR reads, in bytes. An RSA-8192 CSR with the
// SANs of a busy Kubernetes pod is under 4 KiB; 16 KiB leaves room for many names while
// refusing a megabyte "CSR" before any parsing or signature work is spent on it.
const MaxCSRSize = 16 << 10

// ErrCSRRefused is wrapped by every *CSRError, so callers can tell "the CSR asked for
// something it may not have" (a client error, HTTP 400/403) from a failure of the CA
// itself with errors.Is.
var ErrCSRRefused = errors.New("certificate request refused")

// ErrBadIdentity is wrapped by the errors CheckServiceCSR and CheckRoleCSR return when the
// identity they were given (by the issuer's own code or configuration, not by the client)
// is itself invalid, e.g. an empty domain or a malformed DNS suffix. It signals a bug or a
// configuration mistake (HTTP 500), never a client error.
var ErrBadIdentity = errors.New("invalid identity for CSR check")

// The Field of a *CSRError: which part of the request was refused.
const (
	FieldPEM                = "PEM"              // the PEM framing or size
	FieldRequest            = "request"          // the PKCS#10 structure
	FieldSignature          = "signature"        // the CSR's self-signature or its algorithm
	FieldPublicKey          = "public key"       // key type, size or curve
	FieldExtension          = "extension"        // a requested extension
	FieldCommonName         = "subject CN"       // the subject common name
	FieldOrganization       = "subject O"        // the subject organization
	FieldOrganizationalUnit = "subject OU"       // the subject organizational unit
	FieldCountry            = "subject C"        // the subject country
	FieldDNSName            = "DNS SAN"          // a dNSName subject alternative name
	FieldURI                = "URI SAN"          // a uniformResourceIdentifier SAN
	FieldEmail              = "email SAN"        // an rfc822Name SAN
	FieldIP                 = "IP SAN"           // an iPAddress SAN
	FieldSAN                = "subject alt name" // a SAN of a type the issuer never issues
)

// maxValueInError is the longest CSR value quoted in a CSRError.
const maxValueInError = 128

// CSRError says why a CSR was refused: which field, the offending value as the CSR wrote
// it (shortened to 128 bytes), and a reason that states what was expected. The message is
// meant for the requester, so it never contains anything secret: only what they sent and
// what the identity they proved allows.
type CSRError struct {
	// Field is one of the Field constants.
	Field string
	// Value is the refused value as written in the CSR, "" when the problem is an absence
	// (a missing instance id URI) or the whole request (an oversized PEM).
	Value string
	// Reason says what is wrong and what was expected.
	Reason string
}

// Error formats the refusal as `CSR DNS SAN "x.example": <reason>`.
func (e *CSRError) Error() string {
	if e.Value == "" {
		return "CSR " + e.Field + ": " + e.Reason
	}
	return fmt.Sprintf("CSR %s %q: %s", e.Field, e.Value, e.Reason)
}

// Unwrap returns ErrCSRRefused.
func (e *CSRError) Unwrap() error { return ErrCSRRefused }

// refuse builds a *CSRError, shortening value.
func refuse(field, value, format string, args ...any) *CSRError {
	if len(value) > maxValueInError {
		value = value[:maxValueInError] + "..."
	}
	return &CSRError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// ParseCSR parses one PEM "CERTIFICATE REQUEST" (or the legacy "NEW CERTIFICATE REQUEST")
// and checks everything that can be checked without knowing who is asking:
//
//   - at most MaxCSRSize bytes, exactly one PEM block, nothing but white space around it,
//     no PEM headers;
//   - a well-formed PKCS#10 request with no trailing bytes;
//   - an RSA key of 2048 to 8192 bits or an ECDSA key on P-256 or P-384 (Ed25519, P-224,
//     P-521 and everything else refused; see docs/issuer-ca.md for why);
//   - a SHA-2 signature algorithm, and a self-signature that verifies (proof that the
//     requester holds the private key);
//   - requested extensions limited to subjectAltName, basicConstraints with CA:false,
//     keyUsage without keyCertSign or cRLSign, extKeyUsage with only serverAuth and
//     clientAuth, and subjectKeyIdentifier; no duplicates. The issuer sets every
//     extension of the certificate itself; these are allowed only because common tools
//     add them, and they are ignored;
//   - SANs only of the four types the issuer issues (DNS, URI, email, IP);
//   - at most one subject CN.
//
// Every error is a *CSRError. The key size is checked before the signature, so a huge RSA
// key costs no verification. A CSR that passes still names nobody: CheckServiceCSR or
// CheckRoleCSR must compare it with the proven identity before anything is issued.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, refuse(FieldPEM, "", "%d bytes, more than the limit of %d", len(data), MaxCSRSize)
	}
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, refuse(FieldPEM, "", "not a PEM CSR: want -----BEGIN CERTIFICATE REQUEST----- at the start")
	}
	// One BEGIN line only: pem.Decode silently skips a malformed block and returns the
	// next one, which would let garbage precede an accepted CSR.
	if n := bytes.Count(trimmed, []byte("-----BEGIN")); n > 1 {
		return nil, refuse(FieldPEM, "", "a second PEM block (%d BEGIN lines); want exactly one CSR", n)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, refuse(FieldPEM, "", "malformed PEM block (bad base64 or missing END line)")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, refuse(FieldPEM, block.Type, "PEM block type; want CERTIFICATE REQUEST")
	}
	if len(block.Headers) > 0 {
		return nil, refuse(FieldPEM, "", "PEM headers are not allowed in a CSR")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if next, _ := pem.Decode(rest); next != nil {
			return nil, refuse(FieldPEM, next.Type, "a second PEM block; want exactly one CSR")
		}
		return nil, refuse(FieldPEM, "", "%d bytes of trailing data after the CSR", len(bytes.TrimSpace(rest)))
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, refuse(FieldRequest, "", "not a valid PKCS#10 request: %v", err)
	}
	if err := checkRequestShape(csr); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuse(FieldSignature, "", "the CSR's self-signature does not verify with its public key: %v", err)
	}
	return csr, nil
}

// checkRequestShape applies the identity-independent rules of ParseCSR except the PEM
// framing and the signature. The check functions run it again, so that a CSR obtained some
// other way is held to the same rules.
func checkRequestShape(csr *x509.CertificateRequest) error {
	if csr == nil {
		return refuse(FieldRequest, "", "no CSR")
	}
	if err := checkLeafKey(csr.PublicKey); err != nil {
		return err
	}
	if !allowedCSRSignature[csr.SignatureAlgorithm] {
		return refuse(FieldSignature, csr.SignatureAlgorithm.String(), "signature algorithm; want SHA-256, SHA-384 or SHA-512 with RSA, RSA-PSS or ECDSA")
	}
	seen := make(map[string]bool, len(csr.Extensions))
	for _, ext := range csr.Extensions {
		id := ext.Id.String()
		if seen[id] {
			return refuse(FieldExtension, extensionName(ext.Id), "requested twice")
		}
		seen[id] = true
		if err := checkRequestedExtension(ext.Id, ext.Value); err != nil {
			return err
		}
	}
	cns := 0
	for _, attr := range csr.Subject.Names {
		if attr.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		return refuse(FieldCommonName, csr.Subject.CommonName, "%d common names; want one", cns)
	}
	return nil
}

// allowedCSRSignature lists the CSR signature algorithms accepted: the SHA-2 family.
// SHA-1 and MD5 are refused even though crypto/x509 still verifies SHA-1 CSRs.
var allowedCSRSignature = map[x509.SignatureAlgorithm]bool{
	x509.SHA256WithRSA: true, x509.SHA384WithRSA: true, x509.SHA512WithRSA: true,
	x509.SHA256WithRSAPSS: true, x509.SHA384WithRSAPSS: true, x509.SHA512WithRSAPSS: true,
	x509.ECDSAWithSHA256: true, x509.ECDSAWithSHA384: true, x509.ECDSAWithSHA512: true,
}

// checkLeafKey accepts the keys a certificate may be issued for: RSA of athenz.MinRSABits
// to athenz.MaxRSABits bits, ECDSA on P-256 or P-384.
func checkLeafKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return refuse(FieldPublicKey, "RSA", "empty RSA key")
		}
		bits := k.N.BitLen()
		if bits < athenz.MinRSABits || bits > athenz.MaxRSABits {
			return refuse(FieldPublicKey, fmt.Sprintf("RSA %d", bits), "RSA key size; want %d to %d bits", athenz.MinRSABits, athenz.MaxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return refuse(FieldPublicKey, "ECDSA", "empty ECDSA key")
		}
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return refuse(FieldPublicKey, "ECDSA "+k.Curve.Params().Name, "ECDSA curve; want P-256 or P-384")
		}
		return nil
	case ed25519.PublicKey:
		return refuse(FieldPublicKey, "Ed25519", "Ed25519 keys are not issued (Athenz clients, Java and many Envoy/Istio peers cannot use them); want ECDSA P-256 or P-384, or RSA 2048 to 8192 bits")
	default:
		return refuse(FieldPublicKey, fmt.Sprintf("%T", pub), "unsupported key type; want ECDSA P-256 or P-384, or RSA 2048 to 8192 bits")
	}
}

// Extension object identifiers a CSR may carry, and some it may not, for messages.
var (
	oidCommonName           = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidExtSubjectKeyID      = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtSubjectAltName    = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtBasicConstraints  = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtNameConstraints   = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidExtCRLDistribution   = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtCertPolicies      = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidExtAuthorityKeyID    = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtExtendedKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtAuthorityInfo     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidExtTLSFeature        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}
	oidEKUServerAuth        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	knownExtensionNameByOID = map[string]string{
		oidExtSubjectKeyID.String():     "subjectKeyIdentifier",
		oidExtKeyUsage.String():         "keyUsage",
		oidExtSubjectAltName.String():   "subjectAltName",
		oidExtBasicConstraints.String(): "basicConstraints",
		oidExtNameConstraints.String():  "nameConstraints",
		oidExtCRLDistribution.String():  "cRLDistributionPoints",
		oidExtCertPolicies.String():     "certificatePolicies",
		oidExtAuthorityKeyID.String():   "authorityKeyIdentifier",
		oidExtExtendedKeyUsage.String(): "extKeyUsage",
		oidExtAuthorityInfo.String():    "authorityInfoAccess",
		oidExtTLSFeature.String():       "tlsFeature (OCSP must-staple)",
	}
)

// extensionName names an extension for a message: "keyUsage (2.5.29.15)".
func extensionName(id asn1.ObjectIdentifier) string {
	if name, ok := knownExtensionNameByOID[id.String()]; ok {
		return name + " (" + id.String() + ")"
	}
	return id.String()
}

// keyUsage bits, numbered as in RFC 5280 section 4.2.1.3.
const (
	kuBitKeyCertSign = 5
	kuBitCRLSign     = 6
)

// checkRequestedExtension applies the allow-list of requested extensions.
func checkRequestedExtension(id asn1.ObjectIdentifier, value []byte) error {
	switch {
	case id.Equal(oidExtSubjectAltName):
		return checkSANTypes(value)
	case id.Equal(oidExtSubjectKeyID):
		return nil
	case id.Equal(oidExtBasicConstraints):
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(value, &bc); err != nil || len(rest) > 0 {
			return refuse(FieldExtension, extensionName(id), "malformed")
		}
		if bc.IsCA {
			return refuse(FieldExtension, extensionName(id), "asks for CA:true; the issuer signs only end-entity certificates (CA:false)")
		}
		if bc.MaxPathLen != -1 {
			return refuse(FieldExtension, extensionName(id), "asks for a path length, which only a CA may have")
		}
		return nil
	case id.Equal(oidExtKeyUsage):
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(value, &bits); err != nil || len(rest) > 0 {
			return refuse(FieldExtension, extensionName(id), "malformed")
		}
		if bits.At(kuBitKeyCertSign) == 1 || bits.At(kuBitCRLSign) == 1 {
			return refuse(FieldExtension, extensionName(id), "asks for keyCertSign or cRLSign; the issuer signs only end-entity certificates")
		}
		return nil
	case id.Equal(oidExtExtendedKeyUsage):
		var usages []asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(value, &usages); err != nil || len(rest) > 0 {
			return refuse(FieldExtension, extensionName(id), "malformed")
		}
		for _, u := range usages {
			if !u.Equal(oidEKUServerAuth) && !u.Equal(oidEKUClientAuth) {
				return refuse(FieldExtension, extensionName(id), "asks for extended key usage %s; the issuer grants only serverAuth and clientAuth", u)
			}
		}
		return nil
	case id.Equal(oidExtNameConstraints):
		return refuse(FieldExtension, extensionName(id), "name constraints belong to CA certificates; the issuer signs only end-entity certificates")
	default:
		return refuse(FieldExtension, extensionName(id), "not allowed in a CSR: the issuer sets every certificate extension itself (allowed and ignored: subjectAltName, basicConstraints CA:false, keyUsage, extKeyUsage serverAuth/clientAuth, subjectKeyIdentifier)")
	}
}

// SAN GeneralName tags (RFC 5280 section 4.2.1.6).
const (
	sanOtherName = 0
	sanEmail     = 1
	sanDNS       = 2
	sanDirName   = 4
	sanURI       = 6
	sanIP        = 7
	sanRegID     = 8
)

// sanTypeNames names the GeneralName tags 0 to 8, for messages.
var sanTypeNames = [...]string{"otherName", "rfc822Name", "dNSName", "x400Address", "directoryName", "ediPartyName", "uniformResourceIdentifier", "iPAddress", "registeredID"}

// sans holds a CSR's subject alternative names as written, read from the raw extension so
// that no parser normalisation (of URIs, say) stands between the CSR and the checks.
type sans struct {
	dns, uris, emails []string
	ips               [][]byte
}

// walkSANs calls fn for each GeneralName of a subjectAltName extension value.
func walkSANs(value []byte, fn func(tag int, raw []byte) error) error {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(value, &seq)
	if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return refuse(FieldSAN, "", "malformed subjectAltName extension")
	}
	for inner := seq.Bytes; len(inner) > 0; {
		var v asn1.RawValue
		if inner, err = asn1.Unmarshal(inner, &v); err != nil {
			return refuse(FieldSAN, "", "malformed subjectAltName extension")
		}
		if v.Class != asn1.ClassContextSpecific {
			return refuse(FieldSAN, "", "malformed subjectAltName entry")
		}
		if err := fn(v.Tag, v.Bytes); err != nil {
			return err
		}
	}
	return nil
}

// checkSANTypes refuses SAN types the issuer never issues.
func checkSANTypes(value []byte) error {
	return walkSANs(value, func(tag int, _ []byte) error {
		switch tag {
		case sanEmail, sanDNS, sanURI, sanIP:
			return nil
		}
		name := fmt.Sprintf("[%d]", tag)
		if tag >= 0 && tag < len(sanTypeNames) {
			name = sanTypeNames[tag]
		}
		return refuse(FieldSAN, name, "SAN type not issued; want only DNS, URI, email or IP names")
	})
}

// readSANs returns the CSR's SANs as written. The CSR must have passed checkRequestShape.
func readSANs(csr *x509.CertificateRequest) (sans, error) {
	var s sans
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidExtSubjectAltName) {
			continue
		}
		err := walkSANs(ext.Value, func(tag int, raw []byte) error {
			switch tag {
			case sanDNS:
				s.dns = append(s.dns, string(raw))
			case sanURI:
				s.uris = append(s.uris, string(raw))
			case sanEmail:
				s.emails = append(s.emails, string(raw))
			case sanIP:
				if len(raw) != net.IPv4len && len(raw) != net.IPv6len {
					return refuse(FieldIP, fmt.Sprintf("%x", raw), "%d bytes; want 4 (IPv4) or 16 (IPv6)", len(raw))
				}
				s.ips = append(s.ips, raw)
			}
			return nil
		})
		if err != nil {
			return sans{}, err
		}
	}
	return s, nil
}
