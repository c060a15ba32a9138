package issuer

import (
	"log/slog"
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
)

// handleInstanceRegisterToken is GET /instance/{provider}/{domain}/{service}/{instanceId}/token:
// mint an instance register token (zts-svccert -get-instance-register-token). The caller
// is the service itself or a principal allowed action "update" on
// "<domain>:service.<service>"; the provider must be sys.auth.zts (the only provider that
// takes register tokens back) and must be allowed to launch the service. The token is a
// JWS signed with the ZTS key, good once, for 30 minutes, for exactly this instance.
func (s *Server) handleInstanceRegisterToken(w http.ResponseWriter, r *http.Request) error {
	ri := info(r)
	providerName, domain, service, instanceID, err := instancePath(r)
	if err != nil {
		return err
	}
	snap := s.snap()
	c, err := s.requireCaller(r, snap, true)
	if err != nil {
		return err
	}
	ri.setCaller(c)
	prov := s.providers[providerName]
	if prov == nil || !prov.mintsRegisterTokens {
		return forbidden(reasonUnknownProvider, "provider %q does not accept register tokens; use %s", providerName, ZTSProviderName)
	}
	if err := s.authorizeServiceAdmin(snap, c, domain, service); err != nil {
		return err
	}
	if err := s.authorizeLaunch(snap, providerName, domain, service); err != nil {
		return err
	}
	tok, err := ztstoken.Mint(&ztstoken.Claims{
		IssuedAt: s.now().Unix(), Provider: providerName, Domain: domain, Service: service,
		InstanceID: instanceID, ClientID: c.principal,
	}, s.ztsKey.signer, s.ztsKey.id)
	if err != nil {
		return internal("minting the register token", err)
	}
	s.auditIssued(r, "instance_register_token", kindRegisterToken, slog.String("key_id", s.ztsKey.id))
	writeJSON(w, http.StatusOK, InstanceRegisterToken{
		Provider: providerName, Domain: domain, Service: service, AttestationData: tok,
	})
	return nil
}
