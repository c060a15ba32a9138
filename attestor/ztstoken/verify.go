package ztstoken

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Defaults applied to zero Config fields.
const (
	// DefaultMaxAge is how long after iat a token is accepted: 30 minutes, as ZTS.
	DefaultMaxAge = 30 * time.Minute
	// DefaultSkew is how far in the future iat may lie, for issuer replicas whose clocks
	// differ a little.
	DefaultSkew = 30 * time.Second
)

// UseKind is the OnceStore kind under which Verify marks a token's jti as used. It equals
// the issuer store's UseRegisterToken.
const UseKind = "register_token"

// algorithms are the JWS algorithms a register token may use: those Mint signs with.
var algorithms = []string{"ES256", "ES384", "ES512", "RS256"}

// OnceStore marks single-use credentials as used; the issuer's store implements it.
// UseOnce must succeed for exactly one of any number of calls with the same kind and id,
// across all issuer replicas, and fail with an error wrapping attestor.ErrAlreadyUsed for
// the others; any other error means the mark could not be made (the token is refused as
// ReasonUnavailable). expires is when the mark may be forgotten: the token is refused as
// expired by then.
type OnceStore interface {
	UseOnce(ctx context.Context, kind, id string, expires time.Time) error
}

// Config configures a Verifier. Keys and Once are required; every other zero value
// means the documented default.
type Config struct {
	// Keys are the issuer's token signing keys by kid (the keys Mint signed with).
	// Required.
	Keys athenz.KeySet
	// Once makes each token single use. Required.
	Once OnceStore
	// Issuer is the required iss and aud. Empty: Issuer ("sys.auth.zts").
	Issuer string
	// MaxAge is how long after its iat a token is accepted; the age gets no skew. Zero:
	// DefaultMaxAge (30 minutes).
	MaxAge time.Duration
	// Skew is how far in the future iat may lie. Zero: DefaultSkew (30 s); negative:
	// none.
	Skew time.Duration
	// MaxValidity is Result.MaxValidity. Zero: no cap from this attestor.
	MaxValidity time.Duration
}

// Verifier verifies register tokens. It is safe for concurrent use.
type Verifier struct {
	cfg Config
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	var errs []error
	if cfg.Keys == nil {
		errs = append(errs, errors.New("keys are required"))
	}
	if cfg.Once == nil {
		errs = append(errs, errors.New("a single-use store is required"))
	}
	if cfg.MaxAge < 0 || cfg.MaxValidity < 0 {
		errs = append(errs, errors.New("max age and max validity must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register token verifier: %w", err)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = Issuer
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	switch {
	case cfg.Skew == 0:
		cfg.Skew = DefaultSkew
	case cfg.Skew < 0:
		cfg.Skew = 0
	}
	return &Verifier{cfg: cfg}, nil
}

// Recognizes reports whether data has the shape of a compact JWS (three dot-separated
// parts, the first a base64url JSON object), without verifying anything.
func (v *Verifier) Recognizes(data string) bool { return looksLikeJWS(data) }

func looksLikeJWS(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2 && len(s) <= MaxTokenLength
}

// Verify checks a register token against the request, in this order: the JWS shape and
// algorithm, typ JWT, the kid in Keys, the signature, the claims' shape, iss and aud,
// iat (not in the future beyond Skew, not older than MaxAge), the provider, domain,
// service and instance id against the request (the request must name an instance id),
// and finally single use: the jti is marked in Once only when everything else passed, so a
// token presented with a typo can be presented again. The Result is refreshable.
func (v *Verifier) Verify(ctx context.Context, r *attestor.Request) (*attestor.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, attestor.Unavailable("register token verification", err)
	}
	c, err := v.verifyToken(r.AttestationData)
	if err != nil {
		return nil, err
	}
	now := r.Time()
	iat := time.Unix(c.IssuedAt, 0)
	switch {
	case iat.After(now.Add(v.cfg.Skew)):
		return nil, attestor.Refusef(attestor.ReasonNotYetValid, "register token issued at %s, in the future", iat.UTC().Format(time.RFC3339))
	case now.Sub(iat) > v.cfg.MaxAge:
		return nil, attestor.Refusef(attestor.ReasonExpired, "register token issued at %s is older than %s", iat.UTC().Format(time.RFC3339), v.cfg.MaxAge)
	}
	if err := bind(c, r); err != nil {
		return nil, err
	}
	if err := v.cfg.Once.UseOnce(ctx, UseKind, c.ID, iat.Add(v.cfg.MaxAge+v.cfg.Skew)); err != nil {
		if errors.Is(err, attestor.ErrAlreadyUsed) {
			return nil, attestor.Wrap(attestor.ReasonReplayed, err, fmt.Sprintf("register token %s was used before", c.ID))
		}
		return nil, attestor.Unavailable("the single-use store", err)
	}
	attrs := map[string]string{"token_id": c.ID}
	if c.ClientID != "" {
		attrs["client_id"] = c.ClientID
	}
	return &attestor.Result{
		Domain:      strings.ToLower(c.Domain),
		Service:     strings.ToLower(c.Service),
		InstanceID:  c.InstanceID,
		Refreshable: true,
		MaxValidity: v.cfg.MaxValidity,
		Attributes:  attrs,
	}, nil
}

// verifyToken checks everything that depends on the token alone: shape, signature,
// claims, issuer and audience.
func (v *Verifier) verifyToken(token string) (*Claims, error) {
	tok, err := athenz.ParseJWS(token, MaxTokenLength, algorithms...)
	switch {
	case errors.Is(err, athenz.ErrUnsupportedAlgorithm):
		return nil, attestor.Wrap(attestor.ReasonUnsupportedAlgorithm, err, "register token algorithm not allowed")
	case err != nil:
		return nil, attestor.Wrap(attestor.ReasonMalformed, err, "register token is not a readable JWS")
	case !strings.EqualFold(tok.Header.Typ, TokenType):
		return nil, attestor.Refusef(attestor.ReasonMalformed, "register token typ %.40q, want %s", tok.Header.Typ, TokenType)
	case tok.Header.Kid == "":
		return nil, attestor.Refusef(attestor.ReasonUnknownKey, "register token names no key (kid)")
	}
	pub, ok := v.cfg.Keys.Key(tok.Header.Kid)
	if !ok || pub == nil {
		return nil, attestor.Refusef(attestor.ReasonUnknownKey, "register token signed with unknown key %.100q", tok.Header.Kid)
	}
	if err := tok.Verify(pub); err != nil {
		switch {
		case errors.Is(err, athenz.ErrUnsupportedAlgorithm):
			return nil, attestor.Wrap(attestor.ReasonUnsupportedAlgorithm, err, "register token algorithm does not fit its key")
		case errors.Is(err, athenz.ErrUnsupportedKey):
			return nil, attestor.Wrap(attestor.ReasonUnknownKey, err, fmt.Sprintf("key %.100q cannot verify register tokens", tok.Header.Kid))
		}
		return nil, attestor.Wrap(attestor.ReasonBadSignature, err, "register token signature does not verify")
	}
	c, err := decodeClaims(tok.Payload)
	if err != nil {
		return nil, attestor.Wrap(attestor.ReasonMalformed, err, "register token claims are not valid")
	}
	switch {
	case c.Issuer != v.cfg.Issuer:
		return nil, attestor.Refusef(attestor.ReasonWrongIssuer, "register token issuer %.100q, want %q", c.Issuer, v.cfg.Issuer)
	case c.Audience != v.cfg.Issuer:
		return nil, attestor.Refusef(attestor.ReasonWrongAudience, "register token audience %.100q, want %q", c.Audience, v.cfg.Issuer)
	}
	return c, nil
}

// bind checks the claims against the request.
func bind(c *Claims, r *attestor.Request) error {
	if !strings.EqualFold(c.Provider, r.Provider) || !athenz.IsServiceName(r.Provider) {
		return attestor.Refusef(attestor.ReasonIdentityMismatch, "register token is for provider %q, the request names %.100q", c.Provider, r.Provider)
	}
	if err := r.MatchService(c.Domain, c.Service); err != nil {
		return err
	}
	if r.InstanceID == "" {
		return attestor.Refusef(attestor.ReasonIdentityMismatch, "the request carries no instance id; the register token is for instance %q", c.InstanceID)
	}
	return r.MatchInstanceID(c.InstanceID)
}

// decodeClaims reads the payload member by member, by exact name, and checks the shape.
// Unknown claims are ignored, as JWT requires.
func decodeClaims(payload []byte) (*Claims, error) {
	members, err := athenz.DecodeJSONObject(payload)
	if err != nil {
		return nil, err
	}
	c := new(Claims)
	if err := athenz.DecodeJSONMembers(members, map[string]any{
		"jti": &c.ID, "sub": &c.Subject, "iat": &c.IssuedAt, "iss": &c.Issuer, "aud": &c.Audience,
		"provider": &c.Provider, "domain": &c.Domain, "service": &c.Service,
		"instance_id": &c.InstanceID, "client_id": &c.ClientID,
	}); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}
