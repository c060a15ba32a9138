package issuer

import (
	"crypto/x509"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// handleInstanceRegister is POST /instance: a workload registers with its provider's
// attestation and a CSR, and gets its service certificate (201 + Location).
//
// Order matters: everything that can be checked without spending the evidence (names,
// CSR, provider, launch authorization) is checked first, so that a bad request does not
// burn a single-use token; then the provider's attestor judges the evidence; then the CSR
// is checked again against exactly what the evidence proved; then the certificate is
// signed and recorded.
func (s *Server) handleInstanceRegister(w http.ResponseWriter, r *http.Request) error {
	var req InstanceRegisterInformation
	if err := decodeBody(w, r, s.cfg.Listen.MaxBodyBytes, &req); err != nil {
		return err
	}
	ri := info(r)
	providerName, err := checkProvider(req.Provider, "provider")
	if err != nil {
		return err
	}
	domain, err := checkDomain(req.Domain, "domain")
	if err != nil {
		return err
	}
	service, err := checkService(req.Service, "service")
	if err != nil {
		return err
	}
	ri.provider, ri.domain, ri.service = providerName, domain, service
	if req.AttestationData == "" {
		return badRequest("attestationData is required")
	}
	if err := checkHostname(req.Hostname); err != nil {
		return err
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return err
	}
	uriProvider, instanceID := csrInstanceID(csr)
	if instanceID == "" {
		return refuse(http.StatusBadRequest, reasonBadCSR, "the CSR has no instance id: want the URI SAN %q", athenz.InstanceIDURI(providerName, "<instance id>"))
	}
	if uriProvider != "" && uriProvider != providerName {
		return refuse(http.StatusBadRequest, reasonBadCSR, "the CSR's instance id URI names provider %q, the request %q", uriProvider, providerName)
	}
	ri.instance = instanceID
	namespace, err := requestNamespace(req.Namespace)
	if err != nil {
		return err
	}
	if _, err := ca.CheckServiceCSR(csr, s.serviceIdentity(domain, service, providerName, instanceID, namespace, nil)); err != nil {
		return csrError(err)
	}
	prov := s.providers[providerName]
	if prov == nil {
		return forbidden(reasonUnknownProvider, "provider %q is not configured on this issuer", providerName)
	}
	snap := s.snap()
	if err := s.authorizeLaunch(snap, providerName, domain, service); err != nil {
		return err
	}
	caller, err := s.authenticate(r, snap, false, true)
	if err != nil {
		return err
	}
	ri.setCaller(caller)
	res, err := prov.verifier.Verify(r.Context(), &attestor.Request{
		Provider: providerName, Domain: domain, Service: service, InstanceID: instanceID,
		AttestationData: req.AttestationData, PublicKey: csr.PublicKey, ClientIP: clientIP(r),
		Namespace: strings.ToLower(req.Namespace), Now: s.now(),
	})
	if err != nil {
		return attestationError(err)
	}
	if res.Domain != domain || res.Service != service || res.InstanceID != instanceID {
		return forbidden("attestation_identity_mismatch", "the attestation proves %s instance %q, the request asks for %s instance %q",
			athenz.Principal(res.Domain, res.Service), res.InstanceID, athenz.Principal(domain, service), instanceID)
	}
	if res.Namespace != "" {
		namespace = res.Namespace
	}
	return s.registerIssue(w, r, snap, &req, csr, prov, res, namespace)
}

// registerIssue checks the CSR against what the attestation proved, signs, records and
// answers 201.
func (s *Server) registerIssue(w http.ResponseWriter, r *http.Request, snap *snapshot, req *InstanceRegisterInformation, csr *x509.CertificateRequest, prov *provider, res *attestor.Result, namespace string) error {
	issueReq, err := ca.CheckServiceCSR(csr, s.serviceIdentity(res.Domain, res.Service, prov.name, res.InstanceID, namespace, res.DNSNames))
	if err != nil {
		return csrError(err)
	}
	if issueReq.Validity, err = minutes(req.ExpiryTime); err != nil {
		return err
	}
	issueReq.MaxValidity = capValidity(prov.maxValidity, res.MaxValidity, snap.serviceCertCap(res.Domain))
	issued, err := s.issue(r, issueReq, record{
		kind: store.KindService, provider: prov.name, domain: res.Domain, service: res.Service,
		instanceID: res.InstanceID, hostname: req.Hostname,
	})
	if err != nil {
		return err
	}
	if !res.Refreshable {
		// The store has no "refreshable" flag: the refresh route spends the presented
		// certificate's serial once (refreshSource), so spending it now makes every later
		// refresh of this certificate fail, as Athenz refuses to refresh n-token
		// registrations.
		if err := s.store.UseOnce(r.Context(), refreshSource, serialOf(issued), issued.Certificate.NotAfter); err != nil {
			return unavailable("the certificate store", err)
		}
	}
	s.auditIssued(r, "instance_register", kindServiceCert, slog.String("serial", serialOf(issued)),
		slog.Time("not_after", issued.Certificate.NotAfter), slog.Bool("refreshable", res.Refreshable),
		slog.Any("attestation", res.Attributes))
	resp := InstanceIdentity{
		Provider: prov.name, Name: athenz.Principal(res.Domain, res.Service), InstanceID: res.InstanceID,
		X509Certificate: string(issued.CertPEM), X509CertificateSigner: s.signer,
		AthenzJWK: s.athenzJWK(req.AthenzJWK, req.AthenzJWKModified),
	}
	w.Header().Set("Location", BasePath+"/instance/"+prov.name+"/"+res.Domain+"/"+res.Service+"/"+res.InstanceID)
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// refreshSource is the single-use kind under which a refresh spends the serial of the
// certificate it was presented with.
const refreshSource = "refresh_source"

// requestNamespace checks the optional namespace of a request (a SimpleName).
func requestNamespace(ns string) (string, error) {
	if ns == "" {
		return "", nil
	}
	n := strings.ToLower(ns)
	if !athenz.IsSimpleName(n) {
		return "", badRequest("namespace %.100q is not a valid name", ns)
	}
	return n, nil
}

// capValidity returns the smallest positive cap, zero when none is set.
func capValidity(caps ...time.Duration) time.Duration {
	var out time.Duration
	for _, c := range caps {
		if c > 0 && (out == 0 || c < out) {
			out = c
		}
	}
	return out
}
