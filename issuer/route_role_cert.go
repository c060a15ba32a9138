package issuer

import "net/http"

// handleRoleCert is POST /rolecert (zts-rolecert, SIA): a role certificate for the role
// the CSR's CN names, for a caller that holds it. See issueRoleCert.
func (s *Server) handleRoleCert(w http.ResponseWriter, r *http.Request) error {
	issued, err := s.issueRoleCert(w, r, "role_certificate", "", "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RoleCertificate{X509Certificate: string(issued.CertPEM)})
	return nil
}
