package jointoken

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Burner atomically consumes a join token by the SHA-256 of its secret (see Hash) and
// returns the service it was created for and its expiry; the issuer's store implements
// it. Of any number of concurrent burns of one token, across issuer replicas, exactly one
// succeeds. The others fail with an error wrapping attestor.ErrAlreadyUsed; an unknown
// hash fails wrapping attestor.ErrNotFound and an expired token wrapping
// attestor.ErrExpired. Any other error is an outage (ReasonUnavailable).
//
// The secret itself never reaches the Burner, and the store looks tokens up by hash, so no
// comparison of secrets happens anywhere: a timing difference in the lookup reveals at
// most a prefix of a SHA-256 output, which helps nobody find a token.
type Burner interface {
	BurnJoinToken(ctx context.Context, hash []byte) (domain, service string, expires time.Time, err error)
}

// Config configures a Verifier. Burner is required.
type Config struct {
	// Burner consumes tokens. Required.
	Burner Burner
	// MaxValidity is Result.MaxValidity. Zero: no cap from this attestor.
	MaxValidity time.Duration
}

// Verifier verifies join tokens. It is safe for concurrent use.
type Verifier struct {
	cfg Config
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Burner == nil:
		return nil, errors.New("join token verifier: a burner (the issuer's store) is required")
	case cfg.MaxValidity < 0:
		return nil, errors.New("join token verifier: max validity must not be negative")
	}
	return &Verifier{cfg: cfg}, nil
}

// Recognizes reports whether data starts with Prefix.
func (v *Verifier) Recognizes(data string) bool { return strings.HasPrefix(data, Prefix) }

// Verify checks the token's shape, burns it, and requires the service it was created for
// to be the one the request names (or takes it when the request names none). The token
// is burned before that comparison: a token presented for the wrong service is spent, as
// a token that has leaked should be. The instance id is the request's, unproven. The
// Result is refreshable.
func (v *Verifier) Verify(ctx context.Context, r *attestor.Request) (*attestor.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, attestor.Unavailable("join token verification", err)
	}
	if err := Check(r.AttestationData); err != nil {
		return nil, attestor.Wrap(attestor.ReasonMalformed, err, "attestation data is not a join token")
	}
	hash := Hash(r.AttestationData)
	id := hex.EncodeToString(hash[:8])
	domain, service, expires, err := v.cfg.Burner.BurnJoinToken(ctx, hash)
	switch {
	case errors.Is(err, attestor.ErrAlreadyUsed):
		return nil, attestor.Wrap(attestor.ReasonReplayed, err, fmt.Sprintf("join token %s… was used before", id))
	case errors.Is(err, attestor.ErrExpired):
		return nil, attestor.Wrap(attestor.ReasonExpired, err, fmt.Sprintf("join token %s… has expired", id))
	case errors.Is(err, attestor.ErrNotFound):
		return nil, attestor.Wrap(attestor.ReasonUnknownToken, err, "no such join token")
	case err != nil:
		return nil, attestor.Unavailable("the join token store", err)
	}
	if !expires.After(r.Time()) {
		return nil, attestor.Refusef(attestor.ReasonExpired, "join token %s… expired at %s", id, expires.UTC().Format(time.RFC3339))
	}
	if athenz.ValidateDomainName(domain) != nil || athenz.ValidateSimpleName(service) != nil {
		return nil, attestor.Unavailable("the join token store", fmt.Errorf("stored token %s names invalid service %.200q", id, domain+"."+service))
	}
	domain, service = strings.ToLower(domain), strings.ToLower(service)
	if err := r.MatchService(domain, service); err != nil {
		return nil, err
	}
	return &attestor.Result{
		Domain:      domain,
		Service:     service,
		InstanceID:  r.InstanceID,
		Refreshable: true,
		MaxValidity: v.cfg.MaxValidity,
		Attributes:  map[string]string{"token_hash": id},
	}, nil
}
