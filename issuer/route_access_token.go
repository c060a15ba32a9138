package issuer

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handleAccessToken is POST /oauth2/token: an OAuth2 client_credentials grant for an
// access token (JWT, typ at+jwt, signed with the ZTS key) stating the caller's roles in
// one domain. Scope "<domain>:domain" asks for every role the caller holds,
// "<domain>:role.<role>" (repeatable) for those roles; roles the caller does not hold are
// left out, and none at all is 403. The caller authenticates with a service certificate
// (the token is then bound to it with cnf x5t#S256) or an n-token.
func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request) error {
	ri := info(r)
	snap := s.snap()
	c, err := s.requireCaller(r, snap, true)
	if err != nil {
		return err
	}
	ri.setCaller(c)
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return badRequest("Content-Type %.60q: want application/x-www-form-urlencoded", ct)
	}
	body, err := readBody(w, r, s.cfg.Listen.MaxBodyBytes)
	if err != nil {
		return err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return badRequest("request body is not a valid form")
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return badRequest("grant_type %.60q: want client_credentials", gt)
	}
	for _, f := range []string{"proxy_for_principal", "authorization_details", "client_assertion"} {
		if form.Get(f) != "" {
			return badRequest("%s is not supported by this issuer", f)
		}
	}
	sc, err := parseScope(form.Get("scope"))
	if err != nil {
		return err
	}
	ri.domain = sc.domain
	lifetime, err := s.tokenLifetime(form.Get("expires_in"), s.cfg.Tokens.AccessTokenLifetime)
	if err != nil {
		return err
	}
	if !snap.hasDomain(sc.domain) {
		return notFound("domain %q not found", sc.domain)
	}
	held := snap.eval.RolesOf(sc.domain, c.principal, s.now())
	granted := held
	if !sc.all {
		granted = nil
		for _, role := range sc.roles {
			if slices.Contains(held, role) && !slices.Contains(granted, role) {
				granted = append(granted, role)
			}
		}
	}
	if len(granted) == 0 {
		return forbidden(reasonNotMember, "%s holds none of the requested roles in domain %s", c.principal, sc.domain)
	}
	lifetime = capLifetime(lifetime, snap.tokenCap(sc.domain, granted))
	now := s.now()
	jti, err := newUUID()
	if err != nil {
		return internal("token id", err)
	}
	claims := &athenz.AccessTokenClaims{
		Issuer: s.cfg.Tokens.Issuer, Subject: c.principal, Audience: sc.domain,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(lifetime).Unix(), AuthTime: now.Unix(),
		ID: jti, Version: 1, Scopes: granted, Scope: strings.Join(granted, " "),
		UserID: c.principal, ClientID: c.principal,
	}
	if c.method == authMTLS {
		claims.Confirmation = &athenz.Confirmation{X509Thumbprint: athenz.CertThumbprint(c.cert.Raw)}
	}
	tok, err := athenz.SignAccessToken(claims, s.ztsKey.signer, s.ztsKey.id)
	if err != nil {
		return internal("signing the access token", err)
	}
	resp := AccessTokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int32(lifetime / time.Second)}
	if sc.all || !slices.Equal(granted, sc.roles) {
		full := make([]string, len(granted))
		for i, role := range granted {
			full[i] = athenz.JoinRoleName(sc.domain, role)
		}
		resp.Scope = strings.Join(full, " ")
	}
	s.auditIssued(r, "access_token", kindAccessToken, slog.Any("roles", granted), slog.String("jti", jti),
		slog.Int64("expires_in", int64(resp.ExpiresIn)))
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// scope is a parsed access token scope.
type scope struct {
	domain string
	roles  []string // short names, in request order
	all    bool     // "<domain>:domain"
}

// parseScope reads a space-separated scope: exactly one domain, "<d>:domain" and
// "<d>:role.<r>" entries; "openid" and "<d>:service.<s>" (id tokens) are accepted and
// ignored, as ZTS does when OpenID is not enabled.
func parseScope(raw string) (scope, error) {
	var sc scope
	words := strings.Fields(strings.ToLower(raw))
	if len(words) == 0 {
		return sc, badRequest("scope is required: <domain>:domain or <domain>:role.<role>")
	}
	if len(words) > 256 {
		return sc, badRequest("scope has %d entries, limit 256", len(words))
	}
	for _, w := range words {
		if w == "openid" {
			continue
		}
		d, rest, ok := strings.Cut(w, ":")
		if !ok || !athenz.IsDomainName(d) {
			return sc, badRequest("scope entry %.100q: want <domain>:domain or <domain>:role.<role>", w)
		}
		if sc.domain != "" && d != sc.domain {
			return sc, badRequest("scope names domains %q and %q; one domain per request", sc.domain, d)
		}
		switch role, isRole := strings.CutPrefix(rest, "role."); {
		case rest == "domain":
			sc.all = true
		case isRole && athenz.IsEntityName(role):
			sc.roles = append(sc.roles, role)
		case strings.HasPrefix(rest, "service."):
			if !athenz.IsSimpleName(strings.TrimPrefix(rest, "service.")) {
				return sc, badRequest("scope entry %.100q: invalid service", w)
			}
			continue
		default:
			return sc, badRequest("scope entry %.100q: want <domain>:domain or <domain>:role.<role>", w)
		}
		sc.domain = d
	}
	if sc.domain == "" {
		return sc, badRequest("scope names no domain: want <domain>:domain or <domain>:role.<role>")
	}
	return sc, nil
}

// tokenLifetime reads a requested lifetime in seconds ("" or "0": def), capped by
// Tokens.MaxLifetime.
func (s *Server) tokenLifetime(v string, def time.Duration) (time.Duration, error) {
	if v == "" || v == "0" {
		return min(def, s.cfg.Tokens.MaxLifetime), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("expires_in %.20q: want a number of seconds", v)
	}
	return min(time.Duration(min(n, 1<<32))*time.Second, s.cfg.Tokens.MaxLifetime), nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
