package athenz

import "errors"

// Sentinel errors for credential verification. Every error returned by ParseNToken,
// (*NToken).Verify, ParseRoleToken, (*RoleToken).Verify, VerifyRoleToken and
// VerifyAccessToken wraps exactly one of these (or ErrBadSignature or ErrUnsupportedKey
// from sign.go), so an HTTP or gRPC layer can branch with errors.Is and answer 401 with
// the short, fixed reason from TokenErrorReason. The wrapped message adds detail meant for
// logs; it may quote parts of the token, never a key, and the token itself is never logged
// whole by this package.
var (
	// ErrTokenMalformed means the credential could not be read at all: wrong shape, bad
	// encoding, a missing or duplicated field, a value of the wrong type, or a size over
	// the documented limit.
	ErrTokenMalformed = errors.New("malformed token")
	// ErrUnsupportedAlgorithm means a JWS header named an algorithm outside the
	// allow-list (none, HS256, PS256, ...) or one that does not fit the key it names.
	ErrUnsupportedAlgorithm = errors.New("unsupported token algorithm")
	// ErrWrongTokenType means a JWS "typ" header that is not an access token type.
	ErrWrongTokenType = errors.New("wrong token type")
	// ErrUnknownKey means the key id named by the token has no key in the key set.
	ErrUnknownKey = errors.New("unknown token signing key")
	// ErrTokenExpired means the expiry time has passed.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenNotYetValid means the issue or not-before time lies in the future by more
	// than the allowed clock skew.
	ErrTokenNotYetValid = errors.New("token not yet valid")
	// ErrTokenLifetime means a token lives longer than the maximum lifetime (30 days for
	// n-tokens and role tokens, as Athenz enforces).
	ErrTokenLifetime = errors.New("token lifetime too long")
	// ErrWrongIssuer means an access token's "iss" is not the configured issuer.
	ErrWrongIssuer = errors.New("token issuer not accepted")
	// ErrWrongAudience means an access token's "aud" is not one of the accepted audiences.
	ErrWrongAudience = errors.New("token audience not accepted")
	// ErrCertificateBinding means an access token's cnf "x5t#S256" does not match the
	// peer certificate, or binding is required and the token or the request lacks it.
	ErrCertificateBinding = errors.New("token not bound to the client certificate")
)

// tokenReasons maps each sentinel to its reason code, in the order TokenErrorReason tests
// them. The codes are stable API: dashboards and clients may match on them.
var tokenReasons = []struct {
	err    error
	reason string
}{
	{ErrTokenMalformed, "malformed"},
	{ErrUnsupportedAlgorithm, "unsupported_algorithm"},
	{ErrWrongTokenType, "wrong_type"},
	{ErrUnknownKey, "unknown_key"},
	{ErrUnsupportedKey, "unsupported_key"},
	{ErrBadSignature, "bad_signature"},
	{ErrTokenExpired, "expired"},
	{ErrTokenNotYetValid, "not_yet_valid"},
	{ErrTokenLifetime, "lifetime_too_long"},
	{ErrWrongIssuer, "wrong_issuer"},
	{ErrWrongAudience, "wrong_audience"},
	{ErrCertificateBinding, "certificate_binding"},
}

// TokenErrorReason returns a short fixed reason code for a verification error, such as
// "expired" or "bad_signature", suitable for a WWW-Authenticate error_description, a
// response header or a bounded metric label. It returns "" for nil and "invalid" for an
// error that wraps none of the sentinels above.
func TokenErrorReason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range tokenReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid"
}
