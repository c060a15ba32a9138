package athenz

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxAccessTokenLength is the longest access token, in bytes, that VerifyAccessToken
// reads. ZTS repeats the role list in "scp" and "scope", so a token for hundreds of roles
// runs to tens of kilobytes; 64 KiB is more than Envoy forwards in all request headers
// together (60 KiB by default), so nothing longer can be a real bearer token.
const MaxAccessTokenLength = 64 << 10

// DefaultAccessTokenSkew is the clock skew AccessTokenOptions allows when Skew is zero.
const DefaultAccessTokenSkew = 30 * time.Second

// AccessTokenType is the JWS "typ" of Athenz access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// AccessTokenClaims are the claims of an Athenz access token, with ZTS's exact JSON
// names and types. Consumers read the domain from Audience and the roles from Scopes.
type AccessTokenClaims struct {
	// Issuer (iss) is the ZTS issuer, usually "https://<zts>/zts/v1".
	Issuer string `json:"iss,omitempty"`
	// Subject (sub) is the principal ("domain.service" or "user.name"); for
	// proxy_for_principal requests, the principal acted for.
	Subject string `json:"sub,omitempty"`
	// Audience (aud) is the domain the roles belong to, always a single JSON string:
	// athenz-authorizer cannot decode an array, and VerifyAccessToken refuses one.
	Audience string `json:"aud,omitempty"`
	// IssuedAt (iat), ExpiresAt (exp), NotBefore (nbf, never set by ZTS) and AuthTime
	// (auth_time) are integer unix seconds; a fractional or quoted number is refused.
	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
	NotBefore int64 `json:"nbf,omitempty"`
	AuthTime  int64 `json:"auth_time,omitempty"`
	// ID (jti) is a unique token id (a UUID from ZTS).
	ID string `json:"jti,omitempty"`
	// Version (ver) is 1.
	Version int `json:"ver,omitempty"`
	// Scopes (scp) are the short role names granted in Audience.
	Scopes []string `json:"scp,omitempty"`
	// Scope (scope) is Scopes joined with spaces.
	Scope string `json:"scope,omitempty"`
	// UserID (uid) and ClientID (client_id) repeat the principal.
	UserID   string `json:"uid,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// Proxy (proxy) is the caller that asked on Subject's behalf.
	Proxy string `json:"proxy,omitempty"`
	// AuthorizationDetails (authorization_details) is a JSON document carried as a string.
	AuthorizationDetails string `json:"authorization_details,omitempty"`
	// Confirmation (cnf) binds the token to the client certificate it was issued over.
	Confirmation *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the "cnf" claim (RFC 8705 and Athenz's proxy extension).
type Confirmation struct {
	// X509Thumbprint ("x5t#S256") is CertThumbprint of the client certificate.
	X509Thumbprint string `json:"x5t#S256,omitempty"`
	// ProxyPrincipalsSpiffe ("proxy-principals#spiffe") lists SPIFFE URIs of proxies
	// allowed to present the token. VerifyAccessToken returns it but does not act on it.
	ProxyPrincipalsSpiffe []string `json:"proxy-principals#spiffe,omitempty"`
}

// CertThumbprint returns the base64url (unpadded) SHA-256 of a certificate's DER bytes,
// the value of cnf "x5t#S256".
func CertThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SignAccessToken signs claims as a compact JWS with header typ "at+jwt" and the given
// kid: ES256 (raw R||S) for P-256 keys, ES384 for P-384, ES512 for P-521 and RS256 for
// RSA. signer may be a hardware or KMS key; its public key must pass CheckPublicKey.
// Audience, IssuedAt and an ExpiresAt after IssuedAt are required, so that every minted
// token passes VerifyAccessToken with the right key and clock.
func SignAccessToken(claims *AccessTokenClaims, signer crypto.Signer, kid string) (string, error) {
	switch {
	case claims == nil:
		return "", errors.New("sign access token: no claims")
	case kid == "" || len(kid) > 256:
		return "", errors.New("sign access token: kid must be 1 to 256 bytes")
	case claims.Audience == "":
		return "", errors.New("sign access token: aud (the domain) is required")
	case claims.IssuedAt <= 0 || claims.ExpiresAt <= claims.IssuedAt:
		return "", fmt.Errorf("sign access token: want 0 < iat < exp, got iat %d, exp %d", claims.IssuedAt, claims.ExpiresAt)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	tok, err := SignJWS(signer, JWSHeader{Kid: kid, Typ: AccessTokenType}, payload)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return tok, nil
}

// AccessTokenOptions says what VerifyAccessToken accepts. The zero value checks the
// signature, type, times and shape only.
type AccessTokenOptions struct {
	// Issuer, when set, must equal "iss" exactly. Empty accepts any issuer, which is safe
	// only when the KeySet holds the keys of one issuer.
	Issuer string
	// Audiences, when not empty, lists the accepted "aud" values (domains). Empty
	// accepts any domain; the caller then authorizes within whatever domain it names.
	Audiences []string
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// Skew is the clock skew allowed on exp, nbf and iat; zero means
	// DefaultAccessTokenSkew and a negative value allows none.
	Skew time.Duration
	// CertDER is the DER of the peer's client certificate when the request came over
	// mTLS. When both it and the token's cnf "x5t#S256" are present they must match.
	CertDER []byte
	// RequireBinding refuses tokens that are not bound to CertDER: a certificate must be
	// present and the token must carry a matching cnf "x5t#S256", as athenz-authorizer
	// requires by default. When false, a token without cnf, or a request without a
	// certificate, is accepted. (Java ZPE checks binding only when it is given a
	// certificate, and then refuses a token without cnf: RequireBinding set whenever
	// CertDER is.) The authorizer's fallbacks for certificates refreshed after the token
	// was issued, and for cnf "proxy-principals#spiffe", are not implemented: a token
	// must be re-fetched after its certificate rotates.
	RequireBinding bool
	// AllowLegacyType also accepts typ "JWT" (any case) and a missing typ, as Java ZPE
	// does. The default accepts only "at+jwt" (or "application/at+jwt"), so that another
	// JWT signed by the same key, such as a ZTS id token, is never taken for an access
	// token.
	AllowLegacyType bool
}

// KeySet finds token verification keys by key id. Implementations must be safe for
// concurrent use; StaticKeySet is one.
type KeySet interface {
	// Key returns the public key with id kid, or false when there is none.
	Key(kid string) (crypto.PublicKey, bool)
}

// VerifyAccessToken verifies an Athenz access token and returns its claims. It refuses,
// each with an error wrapping the sentinel in brackets: tokens over MaxAccessTokenLength,
// anything but a compact JWS, malformed or duplicated JSON members, fractional times or
// an array "aud" [ErrTokenMalformed]; an alg outside JWSAlgorithms (none, HS256 even when
// "signed" with the public key's bytes, PS256...) or one that does not fit the key
// [ErrUnsupportedAlgorithm]; a typ other than at+jwt [ErrWrongTokenType]; a missing or
// unknown kid [ErrUnknownKey]; a bad signature [ErrBadSignature]; exp passed
// [ErrTokenExpired]; iat or nbf in the future [ErrTokenNotYetValid], each with
// opts.Skew; a wrong iss [ErrWrongIssuer] or aud [ErrWrongAudience]; and a failed
// certificate binding [ErrCertificateBinding]. The signature is checked before the
// claims are decoded. Safe for concurrent use if keys is.
func VerifyAccessToken(token string, keys KeySet, opts AccessTokenOptions) (*AccessTokenClaims, error) {
	jws, err := ParseJWS(token, MaxAccessTokenLength, JWSAlgorithms()...) // any key type ZTS signs with
	if err != nil {
		return nil, fmt.Errorf("access token: %w", err)
	}
	if !acceptedType(jws.Header.Typ, opts.AllowLegacyType) {
		return nil, fmt.Errorf("access token: %w: typ %.40q, want %q", ErrWrongTokenType, jws.Header.Typ, AccessTokenType)
	}
	if jws.Header.Kid == "" {
		return nil, fmt.Errorf("access token: %w: no kid in the header", ErrUnknownKey)
	}
	if keys == nil {
		return nil, fmt.Errorf("access token: %w: no key set", ErrUnknownKey)
	}
	pub, ok := keys.Key(jws.Header.Kid)
	if !ok || pub == nil {
		return nil, fmt.Errorf("access token: %w: kid %.64q", ErrUnknownKey, jws.Header.Kid)
	}
	if err := jws.Verify(pub); err != nil {
		return nil, fmt.Errorf("access token (kid %q): %w", jws.Header.Kid, err)
	}
	c, err := decodeAccessTokenClaims(jws.Payload)
	if err != nil {
		return nil, fmt.Errorf("access token: %w: %w", ErrTokenMalformed, err)
	}
	if err := c.check(opts); err != nil {
		return nil, fmt.Errorf("access token: %w", err)
	}
	return c, nil
}

// acceptedType reports whether a JWS typ marks an access token. Media types compare
// case-insensitively (RFC 7515 section 4.1.9).
func acceptedType(typ string, legacy bool) bool {
	t := strings.ToLower(typ)
	switch t {
	case AccessTokenType, "application/" + AccessTokenType:
		return true
	case "", "jwt", "application/jwt":
		return legacy
	}
	return false
}

// decodeAccessTokenClaims reads the payload member by member, by exact name (see
// DecodeJSONObject). Unknown claims are ignored, as JWT requires.
func decodeAccessTokenClaims(payload []byte) (*AccessTokenClaims, error) {
	members, err := DecodeJSONObject(payload)
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	c := new(AccessTokenClaims)
	for name, raw := range members {
		if name == "cnf" {
			if c.Confirmation, err = decodeConfirmation(raw); err != nil {
				return nil, err
			}
			continue
		}
		if dst := c.claimField(name); dst != nil {
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, fmt.Errorf("claim %q: %v", name, err)
			}
		}
	}
	return c, nil
}

// claimField returns a pointer to the field holding the claim called name, or nil for
// claims this package does not read.
func (c *AccessTokenClaims) claimField(name string) any {
	switch name {
	case "iss":
		return &c.Issuer
	case "sub":
		return &c.Subject
	case "aud":
		return &c.Audience
	case "iat":
		return &c.IssuedAt
	case "exp":
		return &c.ExpiresAt
	case "nbf":
		return &c.NotBefore
	case "auth_time":
		return &c.AuthTime
	case "jti":
		return &c.ID
	case "ver":
		return &c.Version
	case "scp":
		return &c.Scopes
	case "scope":
		return &c.Scope
	case "uid":
		return &c.UserID
	case "client_id":
		return &c.ClientID
	case "proxy":
		return &c.Proxy
	case "authorization_details":
		return &c.AuthorizationDetails
	}
	return nil
}

func decodeConfirmation(raw json.RawMessage) (*Confirmation, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	members, err := DecodeJSONObject(raw)
	if err != nil {
		return nil, fmt.Errorf("claim \"cnf\": %v", err)
	}
	cnf := new(Confirmation)
	if raw, ok := members["x5t#S256"]; ok {
		if err := json.Unmarshal(raw, &cnf.X509Thumbprint); err != nil {
			return nil, fmt.Errorf("claim \"cnf\" x5t#S256: %v", err)
		}
	}
	if raw, ok := members["proxy-principals#spiffe"]; ok {
		if err := json.Unmarshal(raw, &cnf.ProxyPrincipalsSpiffe); err != nil {
			return nil, fmt.Errorf("claim \"cnf\" proxy-principals#spiffe: %v", err)
		}
	}
	return cnf, nil
}

// check applies the claim rules of VerifyAccessToken after the signature verified.
func (c *AccessTokenClaims) check(opts AccessTokenOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	skew := opts.Skew
	if skew == 0 {
		skew = DefaultAccessTokenSkew
	} else if skew < 0 {
		skew = 0
	}
	switch {
	case c.ExpiresAt <= 0 || c.IssuedAt <= 0:
		return fmt.Errorf("%w: exp and iat are required positive integers", ErrTokenMalformed)
	case c.ExpiresAt <= c.IssuedAt:
		return fmt.Errorf("%w: exp %d not after iat %d", ErrTokenMalformed, c.ExpiresAt, c.IssuedAt)
	case c.Audience == "":
		return fmt.Errorf("%w: no aud", ErrTokenMalformed)
	case now.After(time.Unix(c.ExpiresAt, 0).Add(skew)):
		return fmt.Errorf("%w: exp %d, now %d", ErrTokenExpired, c.ExpiresAt, now.Unix())
	case time.Unix(c.IssuedAt, 0).After(now.Add(skew)):
		return fmt.Errorf("%w: iat %d, now %d", ErrTokenNotYetValid, c.IssuedAt, now.Unix())
	case c.NotBefore > 0 && time.Unix(c.NotBefore, 0).After(now.Add(skew)):
		return fmt.Errorf("%w: nbf %d, now %d", ErrTokenNotYetValid, c.NotBefore, now.Unix())
	case opts.Issuer != "" && c.Issuer != opts.Issuer:
		return fmt.Errorf("%w: iss %.100q", ErrWrongIssuer, c.Issuer)
	case len(opts.Audiences) > 0 && !slices.Contains(opts.Audiences, c.Audience):
		return fmt.Errorf("%w: aud %.100q", ErrWrongAudience, c.Audience)
	}
	for _, r := range c.Scopes {
		if !IsEntityName(r) {
			return fmt.Errorf("%w: scp: %w", ErrTokenMalformed, ValidateEntityName(r))
		}
	}
	return c.checkBinding(opts)
}

// checkBinding applies RFC 8705 certificate binding as AccessTokenOptions describes.
func (c *AccessTokenClaims) checkBinding(opts AccessTokenOptions) error {
	var thumb string
	if c.Confirmation != nil {
		thumb = c.Confirmation.X509Thumbprint
	}
	hasCert := len(opts.CertDER) > 0
	switch {
	case opts.RequireBinding && !hasCert:
		return fmt.Errorf("%w: binding is required and the request has no client certificate", ErrCertificateBinding)
	case opts.RequireBinding && thumb == "":
		return fmt.Errorf("%w: binding is required and the token has no cnf x5t#S256", ErrCertificateBinding)
	case hasCert && thumb != "":
		if subtle.ConstantTimeCompare([]byte(thumb), []byte(CertThumbprint(opts.CertDER))) != 1 {
			return fmt.Errorf("%w: cnf x5t#S256 does not match the client certificate", ErrCertificateBinding)
		}
	}
	return nil
}
