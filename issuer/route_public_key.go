package issuer

import (
	"net/http"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handlePublicKey is GET /domain/{domain}/service/{service}/publickey/{keyId}: one public
// key, {"key": <ybase64 PEM>, "id": <keyId>}, as the zmssvctoken validator fetches it
// without credentials. The key id is lower-cased, as ZTS does.
func (s *Server) handlePublicKey(w http.ResponseWriter, r *http.Request) error {
	domain, service, err := pathNames(r)
	if err != nil {
		return err
	}
	ri := info(r)
	ri.domain, ri.service = domain, service
	keyID := strings.ToLower(r.PathValue("keyId"))
	if !isKeyID(keyID) {
		return badRequest("key id %.100q is not valid", r.PathValue("keyId"))
	}
	si, err := s.serviceIdentityDoc(s.snap(), domain, service)
	if err != nil {
		return err
	}
	for _, k := range si.PublicKeys {
		if strings.ToLower(k.ID) == keyID {
			writeJSON(w, http.StatusOK, PublicKeyEntry{Key: k.Key, ID: keyID})
			return nil
		}
	}
	return notFound("service %s has no public key %q", athenz.Principal(domain, service), keyID)
}
