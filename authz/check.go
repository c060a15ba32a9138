package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// CallerSource identifies who is calling. *Authenticator is the production one; the
// server builds one per request mapping in force.
type CallerSource interface {
	// Authenticate returns the caller of in. A *CredentialError (missing or invalid
	// credentials) is answered 401; any other error is "could not decide".
	Authenticate(ctx context.Context, in *Input) (Caller, error)
}

// Outcome is what the pipeline decided, before dry-run or fail-open let a request through.
type Outcome uint8

// Outcomes.
const (
	OutcomeAllow           Outcome = iota // allowed by policy, or bypassed
	OutcomeDeny                           // denied by policy or malformed: 403 (431 for oversized headers)
	OutcomeUnauthenticated                // missing or invalid credentials: 401
	OutcomeError                          // could not decide: no bundle, internal error
)

func (o Outcome) String() string {
	switch o {
	case OutcomeAllow:
		return "allow"
	case OutcomeDeny:
		return "deny"
	case OutcomeUnauthenticated:
		return "unauthenticated"
	default:
		return "error"
	}
}

// Headers the server sets regardless of configuration.
const (
	// HeaderDecision tells the client (and, failing open, the upstream) that a request
	// was not allowed by policy: "deny", "unauthenticated" or "error".
	HeaderDecision = "x-athenz-decision"
	// HeaderDecisionID carries the decision id on answers to the client.
	HeaderDecisionID = "x-athenz-decision-id"
	// HeaderDryRun marks, for the upstream, a request that dry-run let through: "deny",
	// "unauthenticated" or "error"; HeaderDryRunReason says why.
	HeaderDryRun       = "x-athenz-dry-run"
	HeaderDryRunReason = "x-athenz-dry-run-reason"
	// HeaderExplanation carries an allowed request's explanation (JSON) to the client.
	HeaderExplanation = "x-athenz-explanation"
	// credential headers, removed upstream with strip_token.
	headerAuthorization = "authorization"
	headerRoleToken     = "athenz-role-auth"
)

// Header is one HTTP header.
type Header struct{ Name, Value string }

// Result is the answer to one check, in transport-neutral form; grpc.go and http.go turn
// it into a CheckResponse or an HTTP response.
type Result struct {
	// Outcome is what was decided.
	Outcome Outcome
	// Allowed says whether the request goes through: an allow, or a dry-run or fail-open
	// pass of anything else.
	Allowed bool
	// Status is the HTTP status for the client when not Allowed (200 when Allowed).
	Status int
	// Reason is a stable snake_case word: a policy.Reason, a credential reason, or one of
	// bypass, headers_too_large, no_bundle, internal_error.
	Reason     string
	DecisionID string
	// DryRun is set when dry-run let a non-allowed request through; Bypass for bypassed.
	DryRun, Bypass bool
	// UpstreamHeaders are set (overwriting) on the request going upstream, when Allowed.
	UpstreamHeaders []Header
	// RemoveHeaders are removed from the request going upstream, when Allowed.
	RemoveHeaders []string
	// ClientHeaders go to the client: with the denial, or added to the response when
	// Allowed (the explanation).
	ClientHeaders []Header
	// Body is the denial's JSON body.
	Body string
	// Caller, the mapped request and the deciding assertion, for metadata and logs.
	Caller                   Caller
	Domain, Action, Resource string
	Match                    *policy.CompiledAssertion
	Revision                 string
	// Roles is the roles header value, when set.
	Roles string
}

// metricResult is the decisions_total result label.
func (r *Result) metricResult() string {
	switch {
	case r.Outcome == OutcomeError:
		return resultError
	case r.Outcome == OutcomeAllow:
		return resultAllow
	case r.DryRun:
		return resultDryRunDeny
	default:
		return resultDeny
	}
}

// snapshotSource is what the checker needs from the store.
type snapshotSource interface {
	Current() *Snapshot
}

// checkerConfig is DecisionConfig with defaults resolved.
type checkerConfig struct {
	failOpen           bool
	statusOnError      int
	dryRun             bool
	principalHeader    string // "" when off
	domainHeader       string
	rolesHeader        string
	stripToken         bool
	explainHeader      string
	explainPrincipals  map[string]bool
	bypassExact        map[string]bool
	bypassPrefixes     []string
	maxHeaderBytes     int
	envoyErrorResponse bool
}

func resolveDecision(d DecisionConfig) checkerConfig {
	header := func(name, def string) string {
		switch name {
		case "":
			return def
		case HeaderOff:
			return ""
		}
		return name
	}
	c := checkerConfig{
		failOpen:           d.FailureMode == FailOpen,
		statusOnError:      d.StatusOnError,
		dryRun:             d.DryRun,
		principalHeader:    header(d.Headers.Principal, DefaultPrincipalHeader),
		domainHeader:       header(d.Headers.Domain, DefaultDomainHeader),
		rolesHeader:        header(d.Headers.Roles, DefaultRolesHeader),
		stripToken:         d.StripToken,
		explainHeader:      header(d.Explain.Header, DefaultExplainHeader),
		maxHeaderBytes:     d.MaxHeaderBytes,
		envoyErrorResponse: d.EnvoyErrorResponse,
		bypassPrefixes:     d.Bypass.PathPrefixes,
	}
	if c.statusOnError == 0 {
		c.statusOnError = DefaultStatusOnError
	}
	if c.maxHeaderBytes == 0 {
		c.maxHeaderBytes = DefaultMaxHeaderBytes
	}
	if len(d.Explain.Principals) > 0 && c.explainHeader != "" {
		c.explainPrincipals = make(map[string]bool, len(d.Explain.Principals))
		for _, p := range d.Explain.Principals {
			c.explainPrincipals[p] = true
		}
	}
	if len(d.Bypass.Paths) > 0 {
		c.bypassExact = make(map[string]bool, len(d.Bypass.Paths))
		for _, p := range d.Bypass.Paths {
			c.bypassExact[p] = true
		}
	}
	return c
}

// checker runs the decision pipeline shared by gRPC and HTTP. It is safe for concurrent
// use.
type checker struct {
	cfg     checkerConfig
	store   snapshotSource
	cache   *decisionCache // nil: disabled
	metrics *metrics
	dlog    *decisionLog // nil: off
	log     *slog.Logger
	now     func() time.Time
	ids     *idGen
}

// check answers in. It never panics on malformed input and never returns nil.
func (c *checker) check(ctx context.Context, in *Input, transport string) *Result {
	start := time.Now()
	r := &Result{DecisionID: c.ids.next()}
	c.decide(ctx, in, r)
	c.answer(r)
	took := time.Since(start)
	c.metrics.observe(r, transport, took)
	c.dlog.record(in, r, transport, took)
	return r
}

// refuse answers a request the transport could not turn into an Input (an HTTP request
// outside the path prefix) as a deny with reason, through the same metrics and log.
func (c *checker) refuse(in *Input, status int, reason policy.Reason, transport string) *Result {
	r := &Result{DecisionID: c.ids.next(), Outcome: OutcomeDeny, Status: status, Reason: string(reason)}
	c.answer(r)
	c.metrics.observe(r, transport, 0)
	c.dlog.record(in, r, transport, 0)
	return r
}

// decide fills r's outcome, reason and decision facts.
func (c *checker) decide(ctx context.Context, in *Input, r *Result) {
	if headerBytes(in) > c.cfg.maxHeaderBytes {
		r.Outcome, r.Status, r.Reason = OutcomeDeny, 431, reasonHeadersTooLarge
		return
	}
	if c.bypassed(in.Path) {
		r.Outcome, r.Reason, r.Bypass = OutcomeAllow, reasonBypass, true
		return
	}
	snap := c.store.Current()
	if snap == nil {
		r.Outcome, r.Reason = OutcomeError, reasonNoBundle
		return
	}
	r.Revision = snap.Revision
	caller, err := snap.Callers.Authenticate(ctx, in)
	if err != nil {
		var ce *CredentialError
		if errors.As(err, &ce) {
			r.Outcome, r.Status, r.Reason = OutcomeUnauthenticated, 401, ce.Reason
			if r.Reason == "" {
				r.Reason = "invalid_credential"
			}
			return
		}
		c.log.Error("authenticate failed", "decision_id", r.DecisionID, "error", err)
		r.Outcome, r.Reason = OutcomeError, reasonInternal
		return
	}
	r.Caller = caller
	target, reason := mapTarget(snap.Mapping, in)
	if reason == "" && caller.TokenDomain == "" && caller.Principal == "" {
		reason = policy.ReasonUnknownPrincipal
	}
	r.Domain, r.Action, r.Resource = target.Domain, target.Action, target.Resource
	if reason != "" {
		r.Outcome, r.Status, r.Reason = OutcomeDeny, 403, string(reason)
		return
	}
	req := policy.Request{
		Principal:   caller.Principal,
		Action:      target.Action,
		Resource:    target.Resource,
		Time:        c.now(),
		TokenDomain: caller.TokenDomain,
		Roles:       caller.Roles,
	}
	var d policy.Decision
	if c.explainAsked(in, &caller) {
		x := snap.Evaluator.Explain(req)
		d = x.Decision
		r.Roles = c.roleList(&caller, &x)
		c.attachExplanation(r, &x)
	} else {
		e := c.decideCached(snap, &req)
		d = e.decision
		r.Roles = e.roles
	}
	r.Match = d.Match
	r.Reason = string(d.Reason)
	if d.Allowed {
		r.Outcome = OutcomeAllow
	} else {
		r.Outcome, r.Status = OutcomeDeny, 403
	}
}

// decideCached decides req through the cache. For membership callers it also finds the
// roles for the roles header, and caches them only as long as every one is held.
func (c *checker) decideCached(snap *Snapshot, req *policy.Request) cacheEntry {
	var key string
	if c.cache != nil {
		key = cacheKey(snap.Revision, req)
		if e, ok := c.cache.get(key, req.Time); ok {
			c.metrics.cacheHits.Inc()
			return e
		}
		c.metrics.cacheMisses.Inc()
	}
	var e cacheEntry
	validUntil := time.Time{}
	if req.TokenDomain == "" && c.cfg.rolesHeader != "" {
		// Explain reports the roles held with their expiry, so the entry can stop at the
		// first role to lapse; it costs a little more than Decide, on misses only.
		x := snap.Evaluator.Explain(*req)
		e.decision = x.Decision
		var roles []string
		validUntil = x.ValidUntil
		for _, h := range x.Roles {
			if h.Expired || (len(roles) > 0 && roles[len(roles)-1] == h.Role) {
				continue
			}
			roles = append(roles, h.Role)
			if !h.Expires.IsZero() && (validUntil.IsZero() || h.Expires.Before(validUntil)) {
				validUntil = h.Expires
			}
		}
		e.roles = strings.Join(roles, ",")
	} else {
		e.decision = snap.Evaluator.Decide(*req)
		validUntil = e.decision.ValidUntil
	}
	if c.cache != nil {
		c.cache.put(key, e, req.Time, validUntil)
	}
	return e
}

// roleList is the roles header value for an explained request.
func (c *checker) roleList(caller *Caller, x *policy.Explanation) string {
	if caller.TokenDomain != "" || c.cfg.rolesHeader == "" {
		return ""
	}
	var roles []string
	for _, h := range x.Roles {
		if !h.Expired && (len(roles) == 0 || roles[len(roles)-1] != h.Role) {
			roles = append(roles, h.Role)
		}
	}
	return strings.Join(roles, ",")
}

// mapSentinel is a source principal that Mapping.Map always resolves. The caller's
// principal comes from the CallerSource, which applies the same mapping's principal rules
// to mTLS identities; Map is asked only for the domain, action and resource, which do not
// depend on the principal.
const mapSentinel = "spiffe://athenz-mesh.authz/sa/caller"

// mapTarget maps in to (domain, action, resource) with m (nil: the default mapping).
func mapTarget(m *policy.Mapping, in *Input) (policy.MappedRequest, policy.Reason) {
	mr, reason := m.Map(policy.EnvoyRequest{
		Method:            in.Method,
		Path:              in.Path,
		Host:              in.Host,
		SourcePrincipal:   mapSentinel,
		ContextExtensions: in.ContextExtensions,
	})
	mr.Principal = ""
	return mr, reason
}

// headerBytes is the size of in's headers and path, as Envoy counts them.
func headerBytes(in *Input) int {
	n := len(in.Path) + len(in.Host) + len(in.Method)
	for k, v := range in.Headers {
		n += len(k) + len(v)
	}
	return n
}

// bypassed reports whether path (query ignored) matches a bypass rule. Paths that could
// step outside a prefix once normalized never bypass.
func (c *checker) bypassed(path string) bool {
	if c.cfg.bypassExact == nil && len(c.cfg.bypassPrefixes) == 0 {
		return false
	}
	p, _, _ := strings.Cut(path, "?")
	p, _, _ = strings.Cut(p, "#")
	if unsafePath(p) {
		return false
	}
	if c.cfg.bypassExact[p] {
		return true
	}
	for _, prefix := range c.cfg.bypassPrefixes {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// unsafePath reports paths whose meaning changes under normalization.
func unsafePath(p string) bool {
	if strings.Contains(p, "//") || strings.Contains(p, "\\") || strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") ||
		strings.Contains(p, "/../") || strings.Contains(p, "/./") {
		return true
	}
	if i := strings.IndexByte(p, '%'); i >= 0 {
		lower := strings.ToLower(p[i:])
		return strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00")
	}
	return false
}

// explainAsked reports whether the request asks for an explanation and may have one.
func (c *checker) explainAsked(in *Input, caller *Caller) bool {
	if c.cfg.explainPrincipals == nil {
		return false
	}
	if _, ok := in.Headers[c.cfg.explainHeader]; !ok {
		return false
	}
	return c.cfg.explainPrincipals[strings.ToLower(caller.Principal)]
}

func (c *checker) attachExplanation(r *Result, x *policy.Explanation) {
	b, err := json.Marshal(x)
	if err != nil {
		c.log.Error("explain failed", "decision_id", r.DecisionID, "error", err)
		return
	}
	r.ClientHeaders = append(r.ClientHeaders, Header{HeaderExplanation, string(b)})
}

// answer turns the outcome into headers, status and body, applying dry-run, fail-open
// and the identity headers.
func (c *checker) answer(r *Result) {
	switch r.Outcome {
	case OutcomeAllow:
		r.Allowed, r.Status = true, 200
	case OutcomeError:
		r.Status = c.cfg.statusOnError
		if c.cfg.failOpen {
			r.Allowed = true
		}
	}
	if !r.Allowed && c.cfg.dryRun {
		r.Allowed, r.DryRun = true, true
	}
	if !r.Allowed {
		c.denial(r)
		return
	}
	r.UpstreamHeaders = make([]Header, 0, 5)
	set := func(name, value string) {
		if name == "" {
			return
		}
		if value == "" {
			r.RemoveHeaders = append(r.RemoveHeaders, name)
			return
		}
		r.UpstreamHeaders = append(r.UpstreamHeaders, Header{name, value})
	}
	if r.Outcome != OutcomeAllow || r.Bypass {
		// Nothing vouches for the caller: make sure no client-sent identity header
		// reaches the upstream.
		set(c.cfg.principalHeader, "")
		set(c.cfg.domainHeader, "")
		set(c.cfg.rolesHeader, "")
	} else {
		set(c.cfg.principalHeader, r.Caller.Principal)
		set(c.cfg.domainHeader, r.Domain)
		roles := r.Roles
		if r.Caller.TokenDomain != "" {
			roles = strings.Join(r.Caller.Roles, ",")
		}
		set(c.cfg.rolesHeader, roles)
	}
	if r.DryRun {
		word := "deny"
		if r.Outcome == OutcomeUnauthenticated || r.Outcome == OutcomeError {
			word = r.Outcome.String()
		}
		r.UpstreamHeaders = append(r.UpstreamHeaders, Header{HeaderDryRun, word}, Header{HeaderDryRunReason, r.Reason})
	} else if r.Outcome == OutcomeError {
		r.UpstreamHeaders = append(r.UpstreamHeaders, Header{HeaderDecision, "error"})
	}
	if c.cfg.stripToken && r.Outcome == OutcomeAllow {
		switch r.Caller.Source {
		case SourceAccessToken:
			r.RemoveHeaders = append(r.RemoveHeaders, headerAuthorization)
		case SourceRoleToken:
			r.RemoveHeaders = append(r.RemoveHeaders, headerRoleToken)
		}
	}
	r.Status = 200
}

// denialBody is the JSON body of a denial.
type denialBody struct {
	Allowed     bool            `json:"allowed"`
	Decision    string          `json:"decision"`
	Reason      string          `json:"reason"`
	DecisionID  string          `json:"decision_id"`
	Explanation json.RawMessage `json:"explanation,omitempty"`
}

// denial fills the client's answer to a request that is not let through.
func (c *checker) denial(r *Result) {
	body := denialBody{Decision: r.Outcome.String(), Reason: r.Reason, DecisionID: r.DecisionID}
	// An explanation travels in the body of a denial, not in a header.
	kept := r.ClientHeaders[:0]
	for _, h := range r.ClientHeaders {
		if h.Name == HeaderExplanation {
			body.Explanation = json.RawMessage(h.Value)
			continue
		}
		kept = append(kept, h)
	}
	r.ClientHeaders = kept
	var b []byte
	if body.Explanation == nil && jsonSafe(body.Reason) && jsonSafe(body.DecisionID) {
		// The common case, without reflection: every field is a plain word.
		b = make([]byte, 0, 80+len(body.Reason)+len(body.DecisionID))
		b = append(b, `{"allowed":false,"decision":"`...)
		b = append(b, body.Decision...)
		b = append(b, `","reason":"`...)
		b = append(b, body.Reason...)
		b = append(b, `","decision_id":"`...)
		b = append(b, body.DecisionID...)
		b = append(b, `"}`...)
	} else {
		var err error
		if b, err = json.Marshal(body); err != nil {
			b = []byte(`{"allowed":false}`)
		}
	}
	r.Body = string(b)
	r.ClientHeaders = append(r.ClientHeaders,
		Header{"content-type", "application/json"},
		Header{HeaderDecision, r.Outcome.String()},
		Header{HeaderDecisionID, r.DecisionID},
	)
	if r.Outcome == OutcomeUnauthenticated {
		r.ClientHeaders = append(r.ClientHeaders, Header{"www-authenticate", wwwAuthenticate(r.Reason)})
	}
}

// jsonSafe reports whether s needs no escaping inside a JSON string.
func jsonSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// wwwAuthenticate is the challenge for a 401: bare when no credential was presented,
// with RFC 6750's invalid_token otherwise. The reason is reduced to safe characters.
func wwwAuthenticate(reason string) string {
	const challenge = `Bearer realm="athenz"`
	if reason == "" || reason == ReasonNoCredentials {
		return challenge
	}
	desc := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ' ' || c == '.' {
			return c
		}
		return -1
	}, reason)
	if len(desc) > 100 {
		desc = desc[:100]
	}
	return challenge + `, error="invalid_token", error_description="` + desc + `"`
}

// idGen makes decision ids: a random per-process prefix and a counter, unique across
// replicas in practice and cheap on the hot path.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &idGen{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *idGen) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}
