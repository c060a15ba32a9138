package sds

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// newKey generates a private key of the given type on this machine. Keys never leave
// the agent except as the SecretSink's and the Files' copies.
func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case "", KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown key type %q", t)
}

// serviceCSR builds a service certificate request with the Athenz conventions
// (athenz-compat.md §2): CN <domain>.<service>, OU the provider (as SIA writes it), a DNS
// SAN <service>.<domain-dashed>.<suffix> per suffix, the SPIFFE ID first, then
// athenz://instanceid/<provider>/<id>.
func (m *Manager) serviceCSR(spec *IdentitySpec, key crypto.Signer, instanceID, namespace string) ([]byte, error) {
	spiffe := athenz.SpiffeID(m.cfg.SpiffeTrustDomain, namespace, spec.Domain, spec.Service)
	uris, err := parseURIs(spiffe, athenz.InstanceIDURI(spec.Provider, instanceID))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: spec.Name(), OrganizationalUnit: []string{spec.Provider}},
		URIs:    uris,
	}
	for _, sfx := range m.cfg.DNSSuffixes {
		tmpl.DNSNames = append(tmpl.DNSNames, athenz.ServiceDNSName(spec.Domain, spec.Service, sfx))
	}
	return signCSR(tmpl, key)
}

// roleCSR builds a role certificate request as SIA does: CN <domain>:role.<role>, the
// role's SPIFFE ID, the holder as athenz://principal/<principal>, and the holder's
// instance id.
func (m *Manager) roleCSR(spec *IdentitySpec, r RoleSpec, key crypto.Signer, instanceID string) ([]byte, error) {
	uris, err := parseURIs(
		athenz.RoleSpiffeID(m.cfg.SpiffeTrustDomain, r.Domain, r.Role),
		athenz.PrincipalURI(spec.Name()),
		athenz.InstanceIDURI(spec.Provider, instanceID),
	)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: athenz.JoinRoleName(r.Domain, r.Role), OrganizationalUnit: []string{spec.Provider}},
		URIs:    uris,
	}
	return signCSR(tmpl, key)
}

func parseURIs(raw ...string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(raw))
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("certificate request URI %q: %w", r, err)
		}
		out = append(out, u)
	}
	return out, nil
}

func signCSR(tmpl *x509.CertificateRequest, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// parseCertsPEM reads every CERTIFICATE block of a PEM text.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		return nil, errors.New("trailing data after the PEM certificates")
	}
	return out, nil
}

// splitSigner splits ZTS's x509CertificateSigner (CA chain, then roots) into the
// intermediates, which go after a leaf, and the self-signed roots, which go in the
// trust bundle.
func splitSigner(certs []*x509.Certificate) (intermediates, roots []*x509.Certificate) {
	for _, c := range certs {
		if isSelfSigned(c) {
			roots = append(roots, c)
		} else {
			intermediates = append(intermediates, c)
		}
	}
	return intermediates, roots
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// instanceOf reads the provider and instance id of a service certificate from its
// athenz://instanceid URI SAN.
func instanceOf(cert *x509.Certificate) (provider, id string, ok bool) {
	for _, u := range cert.URIs {
		if p, i, err := athenz.ParseInstanceIDURI(u.String()); err == nil {
			return p, i, true
		}
	}
	return "", "", false
}

// spiffeNamespaceOf returns the namespace of a certificate's trust-domain SPIFFE ID, ""
// when it has none.
func spiffeNamespaceOf(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if s, err := athenz.ParseSpiffeID(u.String()); err == nil && s.Form == athenz.SpiffeFormServiceNamespace {
			return s.Namespace
		}
	}
	return ""
}

// k8sTokenInstance reads the pod UID and namespace from a projected service-account
// token (the kubernetes.io claim). The signature is not checked: the token is the
// agent's own evidence, which the issuer verifies; the agent only needs to know which
// instance id and namespace the issuer will read from it, to put them in its CSR.
func k8sTokenInstance(token string) (podUID, namespace string, err error) {
	c, err := k8sTokenClaims(token)
	if err != nil {
		return "", "", err
	}
	return c.podUID, c.namespace, nil
}

// k8sClaims is what the agent reads, unverified, from a projected service-account token.
type k8sClaims struct {
	podUID, namespace, serviceAccount string
	audiences                         []string
}

// k8sTokenClaims reads the pod, namespace, service account and audiences of a
// projected service-account token, without checking its signature (see
// k8sTokenInstance). The token must be bound to a pod.
func k8sTokenClaims(token string) (k8sClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return k8sClaims{}, errors.New("kubernetes token: not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return k8sClaims{}, fmt.Errorf("kubernetes token: payload: %w", err)
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
		K8s struct {
			Namespace string `json:"namespace"`
			Pod       struct {
				UID string `json:"uid"`
			} `json:"pod"`
			ServiceAccount struct {
				Name string `json:"name"`
			} `json:"serviceaccount"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return k8sClaims{}, fmt.Errorf("kubernetes token: claims: %w", err)
	}
	if claims.K8s.Pod.UID == "" || claims.K8s.Namespace == "" {
		return k8sClaims{}, errors.New("kubernetes token: not bound to a pod (no kubernetes.io pod uid and namespace)")
	}
	c := k8sClaims{podUID: claims.K8s.Pod.UID, namespace: claims.K8s.Namespace, serviceAccount: claims.K8s.ServiceAccount.Name}
	// aud is a string or an array of strings (RFC 7519 §4.1.3); anything else reads as
	// no audience.
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil {
		c.audiences = []string{one}
	} else {
		_ = json.Unmarshal(claims.Aud, &c.audiences)
	}
	return c, nil
}
