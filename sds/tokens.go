package sds

import (
	"context"
	"time"
)

// AccessTokenRequest asks the issuer for an OAuth2 access token (ZTS /oauth2/token) for
// roles in one domain. Empty Roles asks for every role the identity holds there.
type AccessTokenRequest struct {
	Domain string
	Roles  []string
	// ExpiresIn is the lifetime asked for; zero lets the issuer choose.
	ExpiresIn time.Duration
}

// RoleTokenRequest asks the issuer for an Athenz role token (ZTS /domain/{d}/token).
type RoleTokenRequest struct {
	Domain string
	Roles  []string
	// MinExpiry and MaxExpiry bound the lifetime; zero lets the issuer choose.
	MinExpiry, MaxExpiry time.Duration
}

// Token is a token the issuer minted: the opaque value to hand to the application and
// when it stops being valid.
type Token struct {
	Value  string
	Expiry time.Time
}

// TokenFetcher obtains tokens from the issuer, authenticated as one of the agent's
// identities (named as in the Cache, for example "sports.api"). The identity manager
// implements it over mTLS with the identity's current certificate; the token HTTP API
// consumes it, caching and renewing what it returns.
type TokenFetcher interface {
	AccessToken(ctx context.Context, identity string, req AccessTokenRequest) (*Token, error)
	RoleToken(ctx context.Context, identity string, req RoleTokenRequest) (*Token, error)
}
