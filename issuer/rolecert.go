package issuer

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// issueRoleCert is the shared body of POST /rolecert and POST /domain/{d}/role/{r}/token:
// an mTLS service certificate caller asks for a certificate of a role it holds. The role
// comes from the CSR CN "<domain>:role.<role>"; when wantDomain and wantRole are set (the
// path of the deprecated route) the CN must name them. Membership is resolved from the
// domain data at the time of the request (members, wildcards, groups, trust, expiry).
func (s *Server) issueRoleCert(w http.ResponseWriter, r *http.Request, route, wantDomain, wantRole string) (*ca.Issued, error) {
	ri := info(r)
	snap := s.snap()
	c, err := s.authenticate(r, snap, false, false)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, unauthenticated("role certificates require a service certificate as client certificate")
	}
	ri.setCaller(c)
	var req RoleCertificateRequest
	if err := decodeBody(w, r, s.cfg.Listen.MaxBodyBytes, &req); err != nil {
		return nil, err
	}
	if req.ProxyForPrincipal != "" {
		return nil, forbidden(reasonForbidden, "proxyForPrincipal is not supported by this issuer")
	}
	if req.ExpiryTime < 0 {
		return nil, badRequest("expiryTime %d is negative", req.ExpiryTime)
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	domain, role, ok := athenz.ParseRoleCertCN(csr.Subject.CommonName)
	if !ok {
		return nil, refuse(http.StatusBadRequest, reasonBadCSR, "CSR subject CN %.200q is not a role name <domain>:role.<role>", csr.Subject.CommonName)
	}
	domain, role = strings.ToLower(domain), strings.ToLower(role)
	ri.domain, ri.role = domain, role
	if wantDomain != "" && (domain != wantDomain || role != wantRole) {
		return nil, refuse(http.StatusBadRequest, reasonBadCSR, "CSR subject CN names %s, the path %s", athenz.JoinRoleName(domain, role), athenz.JoinRoleName(wantDomain, wantRole))
	}
	if !snap.hasDomain(domain) {
		return nil, notFound("domain %q not found", domain)
	}
	if !slices.Contains(snap.eval.RolesOf(domain, c.principal, s.now()), role) {
		return nil, forbidden(reasonNotMember, "%s is not a member of role %s", c.principal, athenz.JoinRoleName(domain, role))
	}
	issueReq, err := ca.CheckRoleCSR(csr, ca.RoleIdentity{
		Domain: domain, Role: role, Principal: c.principal,
		DNSSuffixes: s.cfg.Certificates.DNSSuffixes, SpiffeTrustDomain: s.cfg.Certificates.SpiffeTrustDomain,
		InstanceID: c.id.InstanceID, InstanceProvider: c.id.InstanceProvider,
		AddSpiffeID: s.cfg.Certificates.AddSpiffeID, Subject: s.subjectPolicy(),
	})
	if err != nil {
		return nil, csrError(err)
	}
	issueReq.Validity = time.Duration(req.ExpiryTime) * time.Minute
	issueReq.MaxValidity = snap.roleCertCap(domain, role)
	issued, err := s.issue(r, issueReq, record{
		kind: store.KindRole, domain: c.domain, service: c.service, roleName: athenz.JoinRoleName(domain, role),
	})
	if err != nil {
		return nil, err
	}
	s.auditIssued(r, route, kindRoleCert, slog.String("serial", serialOf(issued)), slog.Time("not_after", issued.Certificate.NotAfter))
	return issued, nil
}
