package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// parseCSR parses a PEM CSR, refusing it with 400 and the CA's precise reason.
func parseCSR(pemText string) (*x509.CertificateRequest, error) {
	if pemText == "" {
		return nil, refuse(http.StatusBadRequest, reasonBadCSR, "csr is required")
	}
	csr, err := ca.ParseCSR([]byte(pemText))
	if err != nil {
		return nil, csrError(err)
	}
	return csr, nil
}

// csrError maps a CSR check failure: the CSR's fault is 400 with the reason, an invalid
// identity (the issuer's own configuration) is 500.
func csrError(err error) error {
	if errors.Is(err, ca.ErrCSRRefused) {
		return &apiError{status: http.StatusBadRequest, reason: reasonBadCSR, message: err.Error()}
	}
	return internal("certificate request check", err)
}

// serviceIdentity is what the issuer allows in a service certificate of domain.service.
func (s *Server) serviceIdentity(domain, service, provider, instanceID, namespace string, hostnames []string) ca.ServiceIdentity {
	c := &s.cfg.Certificates
	return ca.ServiceIdentity{
		Domain: domain, Service: service, Provider: provider, InstanceID: instanceID,
		DNSSuffixes: c.DNSSuffixes, Hostnames: hostnames,
		SpiffeTrustDomain: c.SpiffeTrustDomain, Namespace: namespace, AddSpiffeID: c.AddSpiffeID,
		Subject: s.subjectPolicy(),
	}
}

func (s *Server) subjectPolicy() ca.SubjectPolicy {
	sc := s.cfg.Certificates.Subject
	return ca.SubjectPolicy{Organizations: sc.Organizations, OrganizationalUnits: sc.OrganizationalUnits, Countries: sc.Countries}
}

// record says how an issued certificate is recorded.
type record struct {
	kind                                  store.CertKind
	provider, domain, service, instanceID string
	roleName, hostname, previousSerial    string
}

// issue signs req and records it; the certificate is handed out only when the store
// accepted the record (the store is the atomic gate for refresh races and revocation).
func (s *Server) issue(r *http.Request, req ca.IssueRequest, rec record) (*ca.Issued, error) {
	return s.issueFor(r.Context(), clientIP(r), req, rec)
}

// issueFor is issue for callers that are not HTTP handlers (the Istio CA API).
func (s *Server) issueFor(ctx context.Context, clientIP string, req ca.IssueRequest, rec record) (*ca.Issued, error) {
	issued, err := s.ca.Issue(req)
	if err != nil {
		if errors.Is(err, ca.ErrCAExpired) {
			return nil, unavailable("the CA", err)
		}
		return nil, internal("signing", err)
	}
	cert := issued.Certificate
	err = s.store.PutCertificate(ctx, store.Certificate{
		Serial: serialOf(issued), Kind: rec.kind, Provider: rec.provider,
		Domain: rec.domain, Service: rec.service, InstanceID: rec.instanceID, RoleName: rec.roleName,
		KeyType: ca.DescribeKey(req.PublicKey), Hostname: rec.hostname, ClientIP: clientIP,
		PreviousSerial: rec.previousSerial, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IssuedAt: s.now(),
	})
	switch {
	case err == nil:
		return issued, nil
	case errors.Is(err, store.ErrRevoked):
		return nil, forbidden(reasonRevoked, "instance %s of %s.%s was revoked", rec.instanceID, rec.domain, rec.service)
	case errors.Is(err, store.ErrSerialMismatch), errors.Is(err, store.ErrNotFound):
		return nil, forbidden(reasonNotCurrent, "the presented certificate is not the current certificate of instance %s (it was refreshed already)", rec.instanceID)
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrExists):
		return nil, internal("recording the certificate", err)
	}
	return nil, unavailable("the certificate store", err)
}

// serialOf is the serial of an issued certificate in the store's form (lower-case hex
// without leading zeros), the form every comparison and single-use mark uses.
func serialOf(i *ca.Issued) string { return store.SerialString(i.Certificate.SerialNumber) }
