package issuer

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"log/slog"
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// handleServiceRefresh is POST /instance/{domain}/{service}/refresh, the legacy path
// zts-svccert uses without -provider: a service certificate for a service key.
//
//   - n-token of the service itself: the CSR key must be the key registered under the
//     token's key id (so the n-token and the certificate prove the same key);
//   - mTLS with a certificate of the service itself: the CSR key must be the presented
//     certificate's key (a true refresh);
//   - a principal allowed action "update" on "<domain>:service.<service>": the CSR key
//     must be the key registered under the request's keyId (default "0").
//
// The certificate carries no instance id and takes no part in instance refresh checks.
func (s *Server) handleServiceRefresh(w http.ResponseWriter, r *http.Request) error {
	ri := info(r)
	domain, service, err := pathNames(r)
	if err != nil {
		return err
	}
	ri.domain, ri.service = domain, service
	snap := s.snap()
	c, err := s.requireCaller(r, snap, true)
	if err != nil {
		return err
	}
	ri.setCaller(c)
	var req InstanceRefreshRequest
	if err := decodeBody(w, r, s.cfg.Listen.MaxBodyBytes, &req); err != nil {
		return err
	}
	if !snap.hasDomain(domain) {
		return notFound("domain %q not found", domain)
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return err
	}
	principal := athenz.Principal(domain, service)
	var want crypto.PublicKey
	switch {
	case c.principal == principal && c.method == authNToken:
		want, _ = snap.ServicePublicKey(domain, service, c.keyID)
	case c.principal == principal:
		want = c.cert.PublicKey
	default:
		if err := s.authorizeServiceAdmin(snap, c, domain, service); err != nil {
			return err
		}
		keyID := req.KeyID
		if keyID == "" {
			keyID = DefaultKeyID
		}
		var ok bool
		if want, ok = snap.ServicePublicKey(domain, service, keyID); !ok {
			return forbidden(reasonForbidden, "service %s has no registered public key %q", principal, keyID)
		}
	}
	if !sameKey(csr.PublicKey, want) {
		return refuse(http.StatusBadRequest, reasonBadCSR, "the CSR public key is not the key of %s that this request proves", principal)
	}
	namespace, err := requestNamespace(req.Namespace)
	if err != nil {
		return err
	}
	issueReq, err := ca.CheckServiceCSR(csr, s.serviceIdentity(domain, service, "", "", namespace, nil))
	if err != nil {
		return csrError(err)
	}
	if issueReq.Validity, err = minutes(req.ExpiryTime); err != nil {
		return err
	}
	issueReq.MaxValidity = snap.serviceCertCap(domain)
	issued, err := s.issue(r, issueReq, record{kind: store.KindService, domain: domain, service: service})
	if err != nil {
		return err
	}
	s.auditIssued(r, "service_refresh", kindServiceCert, slog.String("serial", serialOf(issued)),
		slog.Time("not_after", issued.Certificate.NotAfter))
	writeJSON(w, http.StatusOK, Identity{Name: principal, Certificate: string(issued.CertPEM), CACertBundle: s.signer})
	return nil
}

// sameKey compares two public keys by their PKIX encoding.
func sameKey(a, b crypto.PublicKey) bool {
	if a == nil || b == nil {
		return false
	}
	da, err1 := x509.MarshalPKIXPublicKey(a)
	db, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}
