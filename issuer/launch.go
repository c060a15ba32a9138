package issuer

import (
	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Launch authorization, as ZTS does it (athenz-compat.md §1.2 step 7): a provider may
// register an instance of <domain>.<service> only when
//
//   - the sys.auth domain, if it is loaded, lets the provider do action "launch" on
//     resource "sys.auth:instance" (the platform admits the provider at all), and
//   - the tenant domain lets the provider do action "launch" on resource
//     "<domain>:service.<service>" (the service's owners admit the provider).
//
// Both are ordinary assertions decided by the evaluator with the provider as principal,
// so a role holding the provider (directly, by wildcard or group) and an ALLOW assertion
// grant it, and a DENY assertion takes it away. docs/issuer.md shows the domain files.

// Actions and resources of launch authorization.
const (
	actionLaunch        = "launch"
	actionUpdate        = "update"
	sysAuthInstanceRsrc = "sys.auth:instance"
)

// serviceResource is the resource naming a service in its domain's policies.
func serviceResource(domain, service string) string { return domain + ":service." + service }

// authorizeLaunch checks both launch grants. The tenant domain must be loaded (404).
func (s *Server) authorizeLaunch(snap *snapshot, provider, domain, service string) error {
	if !snap.hasDomain(domain) {
		return notFound("domain %q not found", domain)
	}
	now := s.now()
	if snap.hasDomain(athenz.SysAuthDomain) && !snap.allowed(provider, actionLaunch, sysAuthInstanceRsrc, now) {
		return forbidden(reasonLaunchDenied, "provider %s is not authorized to launch instances: domain sys.auth must allow it action %q on %q",
			provider, actionLaunch, sysAuthInstanceRsrc)
	}
	if !snap.allowed(provider, actionLaunch, serviceResource(domain, service), now) {
		return forbidden(reasonLaunchDenied, "provider %s is not authorized to launch %s: domain %s must allow it action %q on %q",
			provider, athenz.Principal(domain, service), domain, actionLaunch, serviceResource(domain, service))
	}
	return nil
}

// authorizeServiceAdmin lets the service itself, or a principal allowed action "update"
// on "<domain>:service.<service>", act for the service (register tokens, revocation).
func (s *Server) authorizeServiceAdmin(snap *snapshot, c *caller, domain, service string) error {
	if c.principal == athenz.Principal(domain, service) {
		return nil
	}
	if !snap.hasDomain(domain) {
		return notFound("domain %q not found", domain)
	}
	if !snap.allowed(c.principal, actionUpdate, serviceResource(domain, service), s.now()) {
		return forbidden(reasonForbidden, "%s is not authorized: it is not %s and domain %s does not allow it action %q on %q",
			c.principal, athenz.Principal(domain, service), domain, actionUpdate, serviceResource(domain, service))
	}
	return nil
}
