package issuer

import (
	"net/http"
)

// handleOpenIDConfig is GET /.well-known/openid-configuration (under /zts/v1 and at the
// root): the issuer name and where its keys are, for OIDC-style verifiers of access
// tokens. No credentials needed.
func (s *Server) handleOpenIDConfig(w http.ResponseWriter, _ *http.Request) error {
	iss := s.cfg.Tokens.Issuer
	writeJSON(w, http.StatusOK, OpenIDConfig{
		Issuer:                           iss,
		AuthorizationEndpoint:            iss + "/oauth2/auth",
		JWKSURI:                          iss + "/oauth2/keys?rfc=true",
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{s.ztsKey.alg},
		ClaimsSupported:                  []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "ver"},
	})
	return nil
}
