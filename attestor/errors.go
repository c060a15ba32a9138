package attestor

import (
	"context"
	"errors"
	"fmt"
)

// Reason is a short, fixed code saying why evidence was refused. Reasons are stable API:
// the issuer returns them to callers, logs them and uses them as bounded metric labels.
type Reason string

// The reasons a Verifier gives. Every one is the caller's fault (HTTP 403) except
// ReasonUnavailable.
const (
	// ReasonMalformed: the attestation data cannot be read (wrong shape, encoding,
	// missing or duplicated fields, over a size limit), or the request lacks what the
	// method needs (a CSR key for n-tokens).
	ReasonMalformed Reason = "malformed"
	// ReasonUnsupportedAlgorithm: a token names a signature algorithm outside the
	// method's allow-list ("none", HS256, PS256...).
	ReasonUnsupportedAlgorithm Reason = "unsupported_algorithm"
	// ReasonUnknownKey: no trusted key has the id the token names.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonBadSignature: the signature does not verify under the key it names.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonExpired: the evidence is past its expiry or older than the method allows.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: the evidence was issued in the future (beyond the clock skew).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonWrongIssuer: the token's issuer is not the configured one.
	ReasonWrongIssuer Reason = "wrong_issuer"
	// ReasonWrongAudience: the token is not meant for this issuer.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonReplayed: single-use evidence was used before.
	ReasonReplayed Reason = "replayed"
	// ReasonUnknownToken: a join token that was never created (or was pruned).
	ReasonUnknownToken Reason = "unknown_token"
	// ReasonIdentityMismatch: the evidence is genuine but for another domain, service,
	// provider, instance or namespace than the request names.
	ReasonIdentityMismatch Reason = "identity_mismatch"
	// ReasonKeyMismatch: the CSR's public key is not the key registered for the service.
	ReasonKeyMismatch Reason = "key_mismatch"
	// ReasonUnmapped: the Kubernetes namespace and service account map to no Athenz
	// service.
	ReasonUnmapped Reason = "unmapped"
	// ReasonNotBound: a Kubernetes token that is not bound to a pod (a legacy secret
	// token, or a token requested for a service account without a pod).
	ReasonNotBound Reason = "not_bound"
	// ReasonNotAuthenticated: the Kubernetes API server's TokenReview did not
	// authenticate the token as a service account.
	ReasonNotAuthenticated Reason = "not_authenticated"
	// ReasonUnavailable: a dependency failed (the store, the JWKS endpoint, the API
	// server), or the request was cancelled. The evidence was not judged and is refused
	// anyway; the issuer should answer with a server error (500/503), not 403.
	ReasonUnavailable Reason = "unavailable"
)

// Error is a refusal. Message is written for the caller and may be returned to it; it
// never holds a secret or the evidence. Err, when set, is the underlying cause for the
// issuer's logs (a store or HTTP error) and is not meant for the caller.
type Error struct {
	// Reason is the fixed refusal code.
	Reason Reason
	// Message explains the refusal to the caller.
	Message string
	// Err is the underlying cause, for logs only; may be nil.
	Err error
}

// Error returns "attestation refused (<reason>): <message>[: <cause>]", for logs.
func (e *Error) Error() string {
	s := "attestation refused (" + string(e.Reason) + "): " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Refusef returns an *Error with the reason and a message formatted as fmt.Sprintf does.
func Refusef(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the reason, message and cause.
func Wrap(reason Reason, err error, message string) *Error {
	return &Error{Reason: reason, Message: message, Err: err}
}

// ReasonOf returns the Reason of the *Error in err's chain, "" for nil, and
// ReasonUnavailable for any other error: an error without a reason is an internal failure,
// and the evidence counts as refused.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonUnavailable
}

// MessageOf returns the caller-facing message of the *Error in err's chain, or a generic
// text for other errors (whose text may hold internals); "" for nil.
func MessageOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "attestation could not be verified"
}

// Errors a dependency of a verifier returns (OnceStore, Burner). The issuer's adapters
// wrap them (fmt.Errorf("...: %w", attestor.ErrAlreadyUsed)) so that a verifier can tell a
// replay from an outage; any other error from a dependency counts as ReasonUnavailable.
var (
	// ErrAlreadyUsed: the single-use credential was used before.
	ErrAlreadyUsed = errors.New("already used")
	// ErrNotFound: the credential is unknown.
	ErrNotFound = errors.New("not found")
	// ErrExpired: the credential exists but has expired.
	ErrExpired = errors.New("expired")
)

// Unavailable returns the refusal for a failed dependency or a cancelled context: a
// ReasonUnavailable *Error carrying err for the logs.
func Unavailable(what string, err error) *Error {
	msg := what + " is unavailable"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		msg = what + ": request cancelled or timed out"
	}
	return Wrap(ReasonUnavailable, err, msg)
}
