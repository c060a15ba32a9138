package issuer

import (
	"net/http"
)

// handleOAuthConfig is GET /.well-known/oauth-authorization-server (RFC 8414): the token
// endpoint, the keys, and the one grant type served. No credentials needed.
func (s *Server) handleOAuthConfig(w http.ResponseWriter, _ *http.Request) error {
	iss := s.cfg.Tokens.Issuer
	writeJSON(w, http.StatusOK, OAuthConfig{
		Issuer:                 iss,
		AuthorizationEndpoint:  iss + "/oauth2/auth",
		IntrospectionEndpoint:  iss + "/oauth2/introspect",
		TokenEndpoint:          iss + "/oauth2/token",
		JWKSURI:                iss + "/oauth2/keys?rfc=true",
		ResponseTypesSupported: []string{"token"},
		GrantTypesSupported:    []string{"client_credentials"},
		TokenEndpointAuthSigningAlgValuesSupported: []string{s.ztsKey.alg},
	})
	return nil
}
