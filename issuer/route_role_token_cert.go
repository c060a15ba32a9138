package issuer

import "net/http"

// handleRoleTokenCert is POST /domain/{domain}/role/{role}/token, the deprecated form of
// POST /rolecert: the CSR's CN must name the role of the path, and the answer is a
// RoleToken whose token is the PEM certificate and whose expiryTime is its NotAfter.
func (s *Server) handleRoleTokenCert(w http.ResponseWriter, r *http.Request) error {
	domain, err := checkDomain(r.PathValue("domain"), "domain")
	if err != nil {
		return err
	}
	role, err := checkRole(r.PathValue("role"))
	if err != nil {
		return err
	}
	issued, err := s.issueRoleCert(w, r, "role_token_certificate", domain, role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RoleToken{Token: string(issued.CertPEM), ExpiryTime: issued.Certificate.NotAfter.Unix()})
	return nil
}
