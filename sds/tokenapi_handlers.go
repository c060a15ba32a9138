package sds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tapiRetryAfter is the Retry-After of 503 answers: an identity being issued usually
// arrives within a few seconds.
const tapiRetryAfter = 5 * time.Second

// tapiAccessTokenResponse is ZTS's /oauth2/token response (AccessTokenResponse).
type tapiAccessTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// tapiTokenResponse is ZTS's RoleToken: {"token","expiryTime"} (unix seconds). The
// n-token endpoint answers in the same shape.
type tapiTokenResponse struct {
	Token      string `json:"token"`
	ExpiryTime int64  `json:"expiryTime"`
}

// tapiSvcCertResponse is the identity's certificate, named as in ZTS's InstanceIdentity.
type tapiSvcCertResponse struct {
	Name string `json:"name"`
	// X509Certificate is the chain, leaf first, as PEM.
	X509Certificate string `json:"x509Certificate"`
	// X509CertificateSigner is every trusted CA certificate, as PEM.
	X509CertificateSigner string `json:"x509CertificateSigner"`
	// ExpiryTime is the leaf's expiry, unix seconds.
	ExpiryTime int64 `json:"expiryTime"`
	// SpiffeID is the leaf's SPIFFE ID, when it has one.
	SpiffeID string `json:"spiffeId,omitempty"`
}

// tapiErrorResponse is ZTS's error body plus the parameter at fault.
type tapiErrorResponse struct {
	Code      int    `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter,omitempty"`
}

type tapiRoute struct {
	endpoint string
	serve    func(http.ResponseWriter, *http.Request)
}

// routes builds the handler: exact paths, GET only, no caching by intermediaries, and
// every answer, errors included, as JSON.
func (t *TokenAPI) routes() http.Handler {
	table := map[string]tapiRoute{
		"/v1/token":     {tapiEPToken, t.serveAccessToken},
		"/v1/roletoken": {tapiEPRoleToken, t.serveRoleToken},
		"/v1/ntoken":    {tapiEPNToken, t.serveNToken},
		"/v1/svccert":   {tapiEPSvcCert, t.serveSvcCert},
		"/healthz":      {tapiEPHealthz, t.serveHealthz},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		rt, ok := table[r.URL.Path]
		if !ok {
			t.writeError(w, tapiEPOther, &tapiError{status: http.StatusNotFound, msg: "no such endpoint; the API serves /v1/token, /v1/roletoken, /v1/ntoken, /v1/svccert and /healthz"})
			return
		}
		if r.Method != http.MethodGet {
			h.Set("Allow", http.MethodGet)
			t.writeError(w, rt.endpoint, &tapiError{status: http.StatusMethodNotAllowed, msg: "only GET is allowed"})
			return
		}
		defer t.recoverPanic(w, rt.endpoint)
		rt.serve(w, r)
	})
}

// recoverPanic turns a panic into a plain 500: the caller never sees a stack, and the
// log gets the value, never request data.
func (t *TokenAPI) recoverPanic(w http.ResponseWriter, endpoint string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	t.log.Error("token API handler panicked", "endpoint", endpoint, "panic", fmt.Sprintf("%T", v))
	t.writeError(w, endpoint, &tapiError{status: http.StatusInternalServerError, msg: "internal error"})
}

func (t *TokenAPI) serveAccessToken(w http.ResponseWriter, r *http.Request) {
	e, ok := t.token(w, r, tapiEPToken, tapiAccess, t.cfg.AccessTokenLifetime)
	if !ok {
		return
	}
	now := t.tokens.clock.Now()
	t.writeJSON(w, tapiEPToken, http.StatusOK, tapiAccessTokenResponse{
		AccessToken: e.tok.Value, TokenType: "Bearer", ExpiresIn: tapiSecondsUntil(e.tok.Expiry, now), Scope: e.scope,
	})
}

func (t *TokenAPI) serveRoleToken(w http.ResponseWriter, r *http.Request) {
	e, ok := t.token(w, r, tapiEPRoleToken, tapiRole, t.cfg.RoleTokenLifetime)
	if !ok {
		return
	}
	t.writeJSON(w, tapiEPRoleToken, http.StatusOK, tapiTokenResponse{Token: e.tok.Value, ExpiryTime: e.tok.Expiry.Unix()})
}

// token runs the shared part of the token endpoints: parameters, identity, cache. On
// failure it has written the answer and returns ok false.
func (t *TokenAPI) token(w http.ResponseWriter, r *http.Request, ep string, kind tapiKind, defLifetime time.Duration) (*tapiEntry, bool) {
	p, perr := parseTapiQuery(r.URL.RawQuery, tapiParamSet{domain: true, expiresIn: true})
	if perr != nil {
		t.writeError(w, ep, perr)
		return nil, false
	}
	id, perr := t.identityFor(r, p.identity)
	if perr != nil {
		t.writeError(w, ep, perr)
		return nil, false
	}
	lifetime := p.expiresIn
	if lifetime == 0 {
		lifetime = defLifetime
	}
	k := tapiKey{identity: id, kind: kind, domain: p.domain, roles: strings.Join(p.roles, ","), lifetime: lifetime}
	e, hit, err := t.tokens.get(r.Context(), k)
	if err != nil {
		t.writeError(w, ep, tapiFetchError(err, t.cfg.FetchTimeout))
		return nil, false
	}
	t.log.Debug("token served", "identity", id, "kind", kind.String(), "domain", p.domain, "roles", k.roles, "cached", hit)
	return e, true
}

// identityOnly reads a query whose only parameter is the optional identity and
// resolves the identity the caller gets, answering the error itself when it fails.
func (t *TokenAPI) identityOnly(w http.ResponseWriter, r *http.Request, ep string) (string, bool) {
	p, perr := parseTapiQuery(r.URL.RawQuery, tapiParamSet{})
	if perr == nil {
		p.identity, perr = t.identityFor(r, p.identity)
	}
	if perr != nil {
		t.writeError(w, ep, perr)
		return "", false
	}
	return p.identity, true
}

func (t *TokenAPI) serveNToken(w http.ResponseWriter, r *http.Request) {
	id, ok := t.identityOnly(w, r, tapiEPNToken)
	if !ok {
		return
	}
	k := tapiKey{identity: id, kind: tapiNToken, lifetime: t.cfg.NTokenLifetime}
	e, _, err := t.tokens.get(r.Context(), k)
	if err != nil {
		t.writeError(w, tapiEPNToken, tapiFetchError(err, t.cfg.FetchTimeout))
		return
	}
	t.writeJSON(w, tapiEPNToken, http.StatusOK, tapiTokenResponse{Token: e.tok.Value, ExpiryTime: e.tok.Expiry.Unix()})
}

// serveSvcCert answers with the identity's chain and the trust bundle. The private key is
// never part of the answer: applications that need it read the SIA files or use SDS.
func (t *TokenAPI) serveSvcCert(w http.ResponseWriter, r *http.Request) {
	id, ok := t.identityOnly(w, r, tapiEPSvcCert)
	if !ok {
		return
	}
	cur, ok := t.cache.Identity(id)
	if !ok {
		t.writeError(w, tapiEPSvcCert, tapiNotReady(id))
		return
	}
	b, ok := t.cache.Bundle()
	if !ok {
		t.writeError(w, tapiEPSvcCert, &tapiError{status: http.StatusServiceUnavailable, msg: "no trust bundle yet; retry shortly", retryAfter: tapiRetryAfter})
		return
	}
	t.writeJSON(w, tapiEPSvcCert, http.StatusOK, tapiSvcCertResponse{
		Name: cur.Identity, X509Certificate: string(cur.ChainPEM), X509CertificateSigner: string(b.RootsPEM),
		ExpiryTime: cur.NotAfter.Unix(), SpiffeID: cur.SpiffeID,
	})
}

// serveHealthz answers 200 once the default identity (when one is configured) is in the
// cache, 503 before.
func (t *TokenAPI) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	if id := t.cfg.DefaultIdentity; id != "" {
		if _, ok := t.cache.Identity(id); !ok {
			t.writeJSON(w, tapiEPHealthz, http.StatusServiceUnavailable, map[string]string{"status": "waiting for identity " + id})
			return
		}
	}
	t.writeJSON(w, tapiEPHealthz, http.StatusOK, map[string]string{"status": "ok"})
}

// identityFor resolves the identity a request uses: the one asked for, which the caller
// must be allowed, or the caller's default.
func (t *TokenAPI) identityFor(r *http.Request, asked string) (string, *tapiError) {
	allowed, def, perr := t.callerIdentities(r)
	if perr != nil {
		return "", perr
	}
	if asked == "" {
		if def != "" {
			return def, nil
		}
		if allowed == nil && len(t.cache.Identities()) == 0 {
			return "", &tapiError{status: http.StatusServiceUnavailable, param: tapiParamIdentity, msg: "the agent has no identity yet; retry shortly", retryAfter: tapiRetryAfter}
		}
		return "", tapiBadParam(tapiParamIdentity, "required: this agent serves several identities; give identity=<domain>.<service>")
	}
	if allowed != nil && !slices.Contains(allowed, asked) {
		return "", &tapiError{status: http.StatusForbidden, param: tapiParamIdentity, msg: fmt.Sprintf("identity %s is not available to this caller", asked)}
	}
	return asked, nil
}

// callerIdentities returns the identities the caller may use (nil: any in the cache) and
// its default ("" when it has none).
func (t *TokenAPI) callerIdentities(r *http.Request) (allowed []string, def string, _ *tapiError) {
	if pc, ok := r.Context().Value(tapiPeerKey{}).(*tapiPeer); ok && t.auth != nil {
		if pc.err != nil {
			return nil, "", &tapiError{status: http.StatusForbidden, msg: "the caller's credentials could not be read"}
		}
		g, err := t.auth.Authorize(r.Context(), pc.cred)
		if err != nil {
			t.limited.Log(slog.LevelWarn, "token API could not authorize a caller", "peer", pc.cred.String(), "error", err)
			return nil, "", &tapiError{status: http.StatusServiceUnavailable, msg: "the caller could not be identified yet; retry shortly", retryAfter: tapiRetryAfter}
		}
		if len(g.Identities) == 0 {
			t.limited.Log(slog.LevelInfo, "token API caller entitled to no identity", "peer", pc.cred.String(), "reason", g.Reason)
			return nil, "", &tapiError{status: http.StatusForbidden, msg: "this caller is entitled to no identity"}
		}
		return g.Identities, g.Identities[0], nil
	}
	allowed, def = t.cfg.AllowedIdentities, t.cfg.DefaultIdentity
	if def == "" {
		switch {
		case len(allowed) == 1:
			def = allowed[0]
		case allowed == nil:
			if ids := t.cache.Identities(); len(ids) == 1 {
				def = ids[0]
			}
		}
	}
	return allowed, def, nil
}

// tapiFetchError chooses the answer for a failed token fetch; timeout is FetchTimeout.
// The token cache maps the errors of its fetches with it, and remembers the answer.
func tapiFetchError(err error, timeout time.Duration) *tapiError {
	var te *tapiError
	var se IssuerStatusError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, ErrIdentityUnavailable):
		return &tapiError{status: http.StatusServiceUnavailable, msg: "the identity has no usable certificate yet; retry shortly", retryAfter: tapiRetryAfter}
	case errors.As(err, &se):
		return tapiIssuerRefusal(se)
	case errors.Is(err, context.DeadlineExceeded):
		return &tapiError{status: http.StatusGatewayTimeout, msg: fmt.Sprintf("the issuer did not answer within %s", timeout)}
	case errors.Is(err, context.Canceled):
		return &tapiError{status: http.StatusServiceUnavailable, msg: "the request was canceled", retryAfter: tapiRetryAfter}
	}
	return &tapiError{status: http.StatusBadGateway, msg: "the issuer could not be reached"}
}

// tapiIssuerRefusal passes the issuer's client errors on with its message; its server
// errors become 502.
func tapiIssuerRefusal(se IssuerStatusError) *tapiError {
	code := se.IssuerStatus()
	msg := se.Error()
	var ie *IssuerError
	if errors.As(se, &ie) {
		msg = ie.Message
	}
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests:
		return &tapiError{status: code, msg: "the issuer refused the request: " + msg}
	}
	return &tapiError{status: http.StatusBadGateway, msg: fmt.Sprintf("the issuer failed (status %d): %s", code, msg)}
}

func (t *TokenAPI) writeError(w http.ResponseWriter, endpoint string, e *tapiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(tapiCeilSeconds(e.retryAfter), 10))
	}
	t.writeJSON(w, endpoint, e.status, tapiErrorResponse{Code: e.status, Message: e.Error(), Parameter: e.param})
}

// writeJSON writes every answer of the API and counts it.
func (t *TokenAPI) writeJSON(w http.ResponseWriter, endpoint string, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":500,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	t.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
}

// tapiCeilSeconds is d in whole seconds, rounded up: a Retry-After never invites a retry
// before the agent would make one.
func tapiCeilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// tapiSecondsUntil is the whole seconds left before t, at least 1 for a token still valid.
func tapiSecondsUntil(t, now time.Time) int64 {
	return max(int64(t.Sub(now)/time.Second), 1)
}

// tapiPeer is what the kernel says about a caller on the Unix socket.
type tapiPeer struct {
	cred PeerCred
	err  error
}

type tapiPeerKey struct{}

// tapiConnContext records the peer credentials of Unix socket connections.
func tapiConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	cred, err := readPeerCred(uc)
	return context.WithValue(ctx, tapiPeerKey{}, &tapiPeer{cred: cred, err: err})
}
