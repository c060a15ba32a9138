package issuer

import (
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handleInstanceDelete is DELETE /instance/{provider}/{domain}/{service}/{instanceId}:
// revoke an instance, so that it can never refresh again and its certificates count as
// revoked wherever the issuer checks. The caller is the provider itself, or a principal
// allowed action "update" on "<domain>:service.<service>" (a service admin). Answers 204,
// also for an instance the store has never seen (it is blocked in advance).
func (s *Server) handleInstanceDelete(w http.ResponseWriter, r *http.Request) error {
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
	if c.principal != providerName {
		if !snap.hasDomain(domain) {
			return notFound("domain %q not found", domain)
		}
		if !snap.allowed(c.principal, actionUpdate, serviceResource(domain, service), s.now()) {
			return forbidden(reasonForbidden, "%s may not revoke instances of %s: it is not the provider and domain %s does not allow it action %q on %q",
				c.principal, athenz.Principal(domain, service), domain, actionUpdate, serviceResource(domain, service))
		}
	}
	if err := s.store.Revoke(r.Context(), providerName, domain, service, instanceID, "deleted by "+c.principal, s.now()); err != nil {
		return unavailable("the certificate store", err)
	}
	s.log.Info("revoked", "route", "instance_delete", "principal", c.principal, "provider", providerName,
		"domain", domain, "service", service, "instance_id", instanceID, "client_ip", clientIP(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
