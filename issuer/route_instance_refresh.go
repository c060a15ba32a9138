package issuer

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// handleInstanceRefresh is POST /instance/{provider}/{domain}/{service}/{instanceId}:
// an instance renews its certificate over mTLS with its current certificate (SIA's
// refresh). The caller must be the service, the instance id must be the same in the path,
// the presented certificate and the CSR, the presented certificate must be the instance's
// current one in the store (so each certificate refreshes once and a revoked instance
// never), and the provider must still be allowed to launch the service.
func (s *Server) handleInstanceRefresh(w http.ResponseWriter, r *http.Request) error {
	ri := info(r)
	providerName, domain, service, instanceID, err := instancePath(r)
	if err != nil {
		return err
	}
	snap := s.snap()
	c, err := s.authenticate(r, snap, false, false)
	if err != nil {
		return err
	}
	if c == nil || c.method != authMTLS {
		return unauthenticated("refresh requires the instance's current certificate as client certificate")
	}
	ri.setCaller(c)
	if c.principal != athenz.Principal(domain, service) {
		return forbidden(reasonForbidden, "the client certificate is for %s, not %s", c.principal, athenz.Principal(domain, service))
	}
	if c.id.InstanceID != instanceID {
		return forbidden(reasonForbidden, "the client certificate is for instance %q, the path names %q", c.id.InstanceID, instanceID)
	}
	if c.id.InstanceProvider != "" && c.id.InstanceProvider != providerName {
		return forbidden(reasonForbidden, "the client certificate was issued through provider %q, the path names %q", c.id.InstanceProvider, providerName)
	}
	var req InstanceRefreshInformation
	if err := decodeBody(w, r, s.cfg.Listen.MaxBodyBytes, &req); err != nil {
		return err
	}
	if err := checkHostname(req.Hostname); err != nil {
		return err
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return err
	}
	if _, id := csrInstanceID(csr); id != instanceID {
		return refuse(http.StatusBadRequest, reasonBadCSR, "the CSR names instance %q, the path %q", id, instanceID)
	}
	prov := s.providers[providerName]
	if prov == nil {
		return forbidden(reasonUnknownProvider, "provider %q is not configured on this issuer", providerName)
	}
	if err := s.authorizeLaunch(snap, providerName, domain, service); err != nil {
		return err
	}
	presented := store.SerialString(c.cert.SerialNumber)
	cur, err := s.store.CurrentCertificate(r.Context(), providerName, domain, service, instanceID)
	switch {
	case errors.Is(err, store.ErrRevoked):
		return forbidden(reasonRevoked, "instance %s was revoked", instanceID)
	case errors.Is(err, store.ErrNotFound):
		return forbidden(reasonNotCurrent, "instance %s has no certificate on record; register it again", instanceID)
	case err != nil:
		return unavailable("the certificate store", err)
	case cur.Serial != presented:
		return forbidden(reasonNotCurrent, "the presented certificate is not the current certificate of instance %s", instanceID)
	}
	namespace := c.id.Spiffe.Namespace
	issueReq, err := ca.CheckServiceCSR(csr, s.serviceIdentity(domain, service, providerName, instanceID, namespace, nil))
	if err != nil {
		return csrError(err)
	}
	if issueReq.Validity, err = minutes(req.ExpiryTime); err != nil {
		return err
	}
	issueReq.MaxValidity = capValidity(prov.maxValidity, c.cert.NotAfter.Sub(c.cert.NotBefore), snap.serviceCertCap(domain))
	if err := s.store.UseOnce(r.Context(), refreshSource, presented, c.cert.NotAfter); err != nil {
		if errors.Is(err, store.ErrAlreadyUsed) {
			return forbidden(reasonNotRefreshable, "this certificate cannot be refreshed (it was registered with an n-token, or refreshed already); register again")
		}
		return unavailable("the certificate store", err)
	}
	issued, err := s.issue(r, issueReq, record{
		kind: store.KindService, provider: providerName, domain: domain, service: service,
		instanceID: instanceID, hostname: req.Hostname, previousSerial: presented,
	})
	if err != nil {
		return err
	}
	s.auditIssued(r, "instance_refresh", kindServiceCert, slog.String("serial", serialOf(issued)),
		slog.String("previous_serial", presented), slog.Time("not_after", issued.Certificate.NotAfter))
	writeJSON(w, http.StatusOK, InstanceIdentity{
		Provider: providerName, Name: athenz.Principal(domain, service), InstanceID: instanceID,
		X509Certificate: string(issued.CertPEM), X509CertificateSigner: s.signer,
		AthenzJWK: s.athenzJWK(req.AthenzJWK, req.AthenzJWKModified),
	})
	return nil
}
