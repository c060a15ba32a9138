package issuer

import (
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handleJWKS is GET /oauth2/keys?rfc=true&service=zts|zms: the ZTS (default) or ZMS
// signing key as a JWK set. With rfc=true EC curves have their RFC 7518 names (P-256),
// which go-jose, lestrrat jwx and zpe-updater need; without it the OpenSSL names ZTS
// sends by default (prime256v1). No credentials needed.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	rfc := q.Get("rfc") == "true"
	var k *signingKey
	switch q.Get("service") {
	case "", "zts":
		k = s.ztsKey
	case "zms":
		k = s.zmsKey
	default:
		return badRequest("service %.40q: want zts or zms", q.Get("service"))
	}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, athenz.JWKS{Keys: []athenz.JWK{k.jwk(rfc)}})
	return nil
}

// athenzJWK is the AthenzJWKConfig of a register or refresh response: sent when the
// request asks (athenzJWK true) and its copy is missing or older than the issuer's keys.
// Modified is always set: SIA dereferences it without a nil check.
func (s *Server) athenzJWK(want *bool, have *athenz.Timestamp) *AthenzJWKConfig {
	if want == nil || !*want {
		return nil
	}
	modified := athenz.NewTimestamp(s.started)
	if have != nil && !have.Before(modified.Time) {
		return nil
	}
	return &AthenzJWKConfig{
		ZMS:      &JWKList{Keys: []athenz.JWK{s.zmsKey.jwk(true)}},
		ZTS:      &JWKList{Keys: []athenz.JWK{s.ztsKey.jwk(true)}},
		Modified: &modified,
	}
}
