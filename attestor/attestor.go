package attestor

import (
	"context"
	"crypto"
	"time"
)

// Request is what an attestor judges: one register (or attested refresh) call. The issuer
// fills it from the request body and the CSR before calling Verify; every field is
// untrusted input except Now.
type Request struct {
	// Provider is the provider service the caller names, e.g. "sys.auth.zts" or
	// "athenz-mesh.k8s.prod" (lower case, as the issuer lowercases incoming names).
	Provider string
	// Domain and Service name the Athenz service the caller asks to be. Both empty means
	// "whichever service the evidence proves", for callers that cannot name one (Istio's
	// CreateCertificate); only methods whose evidence names the service (k8s, ztstoken,
	// jointoken, ntoken all do) can answer such a request. When set, they must equal
	// what the evidence proves; names compare ignoring case.
	Domain  string
	Service string
	// InstanceID is the instance id of the CSR (athenz://instanceid/<provider>/<id>).
	// Empty when the CSR has none. Methods that prove an instance id require it to match
	// (ztstoken, k8s); the others pass it through unproven.
	InstanceID string
	// AttestationData is the evidence, exactly as received.
	AttestationData string
	// PublicKey is the public key of the CSR. Methods that bind the certificate key to a
	// registered key (ntoken) require it; the others ignore it.
	PublicKey crypto.PublicKey
	// ClientIP is the caller's address as the issuer saw it, for audit. No method here
	// treats it as proof.
	ClientIP string
	// Namespace is the SPIFFE/Kubernetes namespace the caller asks for (ZTS's
	// "namespace"). Methods that prove a namespace (k8s) require it to match when set.
	Namespace string
	// Now is the verification time. Zero: time.Now(). Tests inject a fixed clock here.
	Now time.Time
}

// Time returns r.Now, or time.Now() when it is zero.
func (r *Request) Time() time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// Result is what the evidence proves. The issuer enforces every field: it issues for
// exactly Domain.Service, puts exactly InstanceID (when set) in the instance id SAN,
// caps the lifetime at MaxValidity, allows no DNS name beyond its own service names and
// DNSNames, and records Refreshable with the certificate.
type Result struct {
	// Domain and Service are the proven Athenz service, in lower case. Always set.
	Domain  string
	Service string
	// InstanceID is the instance id the certificate must carry. Methods that prove one
	// (the pod UID, the token's instance_id) set it from the evidence; the others copy
	// Request.InstanceID, which then is the caller's choice, not a proven fact.
	InstanceID string
	// Refreshable says whether a certificate issued on this evidence may later be
	// refreshed over mTLS with itself. False for n-tokens, as in Athenz.
	Refreshable bool
	// MaxValidity caps the certificate lifetime. Zero: the method sets no cap and the
	// issuer's own caps apply.
	MaxValidity time.Duration
	// DNSNames are further DNS SANs the evidence proves (beyond the service names the
	// issuer derives itself). Empty for every method here today: none of their evidence
	// proves a host name.
	DNSNames []string
	// Namespace is the Kubernetes namespace the evidence proves (k8s), which the issuer
	// uses as the SPIFFE namespace; empty when the method proves none.
	Namespace string
	// Attributes describe the evidence for the audit log: pod, service account, token
	// id, key id. Never a secret, never the evidence itself. Keys are lower-case
	// snake_case and documented per method.
	Attributes map[string]string
}

// Verifier checks one kind of evidence. Verify returns a complete Result, or an error that
// is an *Error (errors.As) carrying the Reason; it never returns both nil. Implementations
// are safe for concurrent use and do not keep ctx.
type Verifier interface {
	Verify(ctx context.Context, r *Request) (*Result, error)
}

// Recognizer is implemented by verifiers that can tell from its shape alone, cheaply and
// without verifying anything, whether attestation data is of their kind. ByFormat uses it.
type Recognizer interface {
	Recognizes(attestationData string) bool
}

// FormatVerifier is a Verifier that is also a Recognizer.
type FormatVerifier interface {
	Verifier
	Recognizer
}

// ByFormat returns a Verifier for a provider that accepts several kinds of evidence, as
// Athenz's sys.auth.zts accepts both n-tokens and instance register tokens: each request
// goes to the first of vs that recognizes its attestation data, and data none recognizes
// is refused with ReasonMalformed. Order vs from the most specific shape to the least.
func ByFormat(vs ...FormatVerifier) Verifier { return byFormat(vs) }

type byFormat []FormatVerifier

// Verify hands r to the first verifier that recognizes its data.
func (b byFormat) Verify(ctx context.Context, r *Request) (*Result, error) {
	for _, v := range b {
		if v.Recognizes(r.AttestationData) {
			return v.Verify(ctx, r)
		}
	}
	return nil, Refusef(ReasonMalformed, "attestation data is of no kind provider %.100q accepts", r.Provider)
}

// Target says which identity the agent is about to register, for collectors whose
// evidence depends on it (an n-token names its service).
type Target struct {
	// Provider is the provider the agent registers with.
	Provider string
	// Domain and Service name the Athenz service the agent registers as.
	Domain  string
	Service string
	// InstanceID is the instance id the agent puts in its CSR.
	InstanceID string
}

// Collector produces attestation data on the agent's side. Collect is called for every
// register attempt and reads its inputs afresh (token files rotate). It returns an
// error, never empty data. Implementations are safe for concurrent use.
type Collector interface {
	Collect(ctx context.Context, t Target) (attestationData string, err error)
}

// OneTime is implemented by collectors of single-use evidence (register tokens, join
// tokens). The agent calls Used after the issuer accepted the evidence Collect returned,
// so that the collector can discard it as configured (see AfterUse); Used is not called
// after a failed attempt, so the evidence can be retried if the issuer never consumed it.
type OneTime interface {
	Used(ctx context.Context) error
}

// AfterUse says what a OneTime collector does with its token file once the issuer has
// accepted the token. The zero value keeps the file.
type AfterUse string

// The AfterUse choices.
const (
	// AfterUseKeep leaves the file alone (the default, and the only choice for read-only
	// mounts such as Kubernetes Secret volumes). The token is spent on the issuer's side
	// either way, so keeping it leaks nothing usable.
	AfterUseKeep AfterUse = "keep"
	// AfterUseRemove deletes the file; the agent needs write access to its directory.
	AfterUseRemove AfterUse = "remove"
	// AfterUseTruncate empties the file in place; the agent needs write access to the
	// file only.
	AfterUseTruncate AfterUse = "truncate"
)

// Valid reports whether a is one of the AfterUse constants or empty.
func (a AfterUse) Valid() bool {
	switch a {
	case "", AfterUseKeep, AfterUseRemove, AfterUseTruncate:
		return true
	}
	return false
}

// MatchService returns nil when r names no service (Domain and Service both empty) or
// names domain.service, comparing ASCII letters without case as the Athenz servers do; else
// an *Error with ReasonIdentityMismatch. domain and service are what the evidence proves.
func (r *Request) MatchService(domain, service string) error {
	if r.Domain == "" && r.Service == "" {
		return nil
	}
	if !equalFoldASCII(r.Domain, domain) || !equalFoldASCII(r.Service, service) {
		return Refusef(ReasonIdentityMismatch, "the evidence is for service %.200q, the request names %.200q",
			domain+"."+service, r.Domain+"."+r.Service)
	}
	return nil
}

// MatchInstanceID returns nil when r names no instance id or names id exactly (instance ids
// are case sensitive); else an *Error with ReasonIdentityMismatch. id is what the evidence
// proves.
func (r *Request) MatchInstanceID(id string) error {
	if r.InstanceID != "" && r.InstanceID != id {
		return Refusef(ReasonIdentityMismatch, "the evidence is for instance %.200q, the request names %.200q", id, r.InstanceID)
	}
	return nil
}

// equalFoldASCII is strings.EqualFold restricted to ASCII: Unicode folding would let
// "\u017fports" (long s) stand for "sports".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
