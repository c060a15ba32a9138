package policy

import "time"

// Request is one authorization question: may Principal perform Action on Resource?
type Request struct {
	// Principal is the caller, "domain.service" or "user.name". Ignored in token mode.
	Principal string
	// Action is free text, matched case-insensitively against assertion actions.
	Action string
	// Resource is "<domain>:<entity>"; the domain part selects whose policies apply.
	Resource string
	// Time is when the question is asked, for member expiry. Zero means now.
	Time time.Time
	// TokenDomain, when non-empty, selects token mode: the caller's roles are Roles in
	// TokenDomain, as an access token (aud, scp), role token (d, r) or role certificate
	// stated them, instead of being looked up by membership. A resource in another domain
	// is denied with ReasonDomainMismatch.
	TokenDomain string
	// Roles are short role names, used only in token mode.
	Roles []string
}

// Reason says why a decision came out as it did. The values are stable: they appear in
// metrics labels, logs, JSON output and the Rego result.
type Reason string

// Reasons.
const (
	ReasonAllowed        Reason = "allowed"         // an ALLOW assertion matched and no DENY did
	ReasonDenied         Reason = "denied"          // a DENY assertion matched
	ReasonNoMatch        Reason = "no_match"        // the caller holds roles, but no assertion matched
	ReasonNotMember      Reason = "not_member"      // the caller holds no role in the domain
	ReasonMemberExpired  Reason = "member_expired"  // every role the caller had in the domain has expired
	ReasonUnknownDomain  Reason = "unknown_domain"  // the resource's domain is not loaded
	ReasonDomainMismatch Reason = "domain_mismatch" // token mode: the token is for another domain
	ReasonInvalid        Reason = "invalid_request" // empty action or principal, or resource without "domain:"
	// ReasonUnknownPrincipal: request mapping (Mapping.Map) could not turn the caller's
	// identity (an Envoy source principal) into an Athenz principal, e.g. an Istio SPIFFE
	// ID whose namespace no mapping names, or no mTLS identity at all.
	ReasonUnknownPrincipal Reason = "unknown_principal"
)

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool
	Reason  Reason
	// Domain is the resource's domain (lower-case).
	Domain string
	// Match is the assertion that decided: the lowest-ID matching DENY when denied by an
	// assertion, the lowest-ID matching ALLOW when allowed; nil otherwise.
	Match *CompiledAssertion
	// ValidUntil is the earliest membership expiry the decision depended on: a cache must
	// not serve it after that instant. Zero means it holds until the data changes.
	ValidUntil time.Time
}
