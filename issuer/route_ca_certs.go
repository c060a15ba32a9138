package issuer

import (
	"net/http"
)

// CACertsName is the one CA bundle name GET /cacerts/{name} knows.
const CACertsName = "athenz"

// handleCACerts is GET /cacerts/{name}: {"name": "athenz", "certs": <PEM>}, the CA chain
// (intermediates) followed by every trusted root, the same bundle register and refresh
// send as x509CertificateSigner. Other names are 404. No credentials needed.
func (s *Server) handleCACerts(w http.ResponseWriter, r *http.Request) error {
	if name := r.PathValue("name"); name != CACertsName {
		return notFound("CA bundle %.100q not found; the issuer serves %q", name, CACertsName)
	}
	writeJSON(w, http.StatusOK, CertificateAuthorityBundle{Name: CACertsName, Certs: s.signer})
	return nil
}
