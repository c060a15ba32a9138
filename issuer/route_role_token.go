package issuer

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handleRoleToken is GET /domain/{domain}/token: a role token (v=Z1, signed with the ZTS
// key) for the caller's roles in the domain. "role" is a comma list of short role names
// (absent: every role held, marked c=1); roles not held are left out, none held is 403.
// Lifetime: a positive maxExpiryTime (seconds) wins, else a minExpiryTime above the
// default, else Tokens.RoleTokenLifetime; capped by Tokens.MaxLifetime and by the
// smallest tokenExpiryMins of the granted roles, else the domain's.
func (s *Server) handleRoleToken(w http.ResponseWriter, r *http.Request) error {
	ri := info(r)
	domain, err := checkDomain(r.PathValue("domain"), "domain")
	if err != nil {
		return err
	}
	ri.domain = domain
	snap := s.snap()
	c, err := s.requireCaller(r, snap, true)
	if err != nil {
		return err
	}
	ri.setCaller(c)
	q := r.URL.Query()
	if q.Get("proxyForPrincipal") != "" {
		return forbidden(reasonForbidden, "proxyForPrincipal is not supported by this issuer")
	}
	lifetime, err := s.roleTokenLifetime(q.Get("minExpiryTime"), q.Get("maxExpiryTime"))
	if err != nil {
		return err
	}
	if !snap.hasDomain(domain) {
		return notFound("domain %q not found", domain)
	}
	held := snap.eval.RolesOf(domain, c.principal, s.now())
	roles, complete := held, true
	if rs := q.Get("role"); rs != "" {
		complete = false
		roles = nil
		for _, role := range strings.Split(strings.ToLower(rs), ",") {
			if role = strings.TrimSpace(role); !athenz.IsEntityName(role) {
				return badRequest("role %.100q is not a valid role name", role)
			}
			if slices.Contains(held, role) && !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
	}
	if len(roles) == 0 {
		return forbidden(reasonNotMember, "%s holds none of the requested roles in domain %s", c.principal, domain)
	}
	lifetime = capLifetime(lifetime, snap.tokenCap(domain, roles))
	now := s.now()
	tok, err := (&athenz.RoleToken{
		Domain: domain, Roles: roles, CompleteRoleSet: complete, Principal: c.principal,
		Host: s.cfg.Tokens.Host, IssueTime: now, ExpiryTime: now.Add(lifetime), KeyID: s.ztsKey.id,
	}).Sign(s.ztsKey.signer)
	if err != nil {
		return internal("signing the role token", err)
	}
	s.auditIssued(r, "role_token", kindRoleToken, slog.Any("roles", roles), slog.Duration("lifetime", lifetime))
	writeJSON(w, http.StatusOK, RoleToken{Token: tok, ExpiryTime: now.Add(lifetime).Unix()})
	return nil
}

// roleTokenLifetime applies ZTS's rules to the min and max expiry parameters (seconds).
func (s *Server) roleTokenLifetime(minV, maxV string) (time.Duration, error) {
	parse := func(name, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return 0, badRequest("%s %.20q: want a number of seconds", name, v)
		}
		return time.Duration(n) * time.Second, nil
	}
	lo, err := parse("minExpiryTime", minV)
	if err != nil {
		return 0, err
	}
	hi, err := parse("maxExpiryTime", maxV)
	if err != nil {
		return 0, err
	}
	d := s.cfg.Tokens.RoleTokenLifetime
	switch {
	case hi > 0:
		d = hi
	case lo > d:
		d = lo
	}
	return min(d, s.cfg.Tokens.MaxLifetime), nil
}
