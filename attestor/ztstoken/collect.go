package ztstoken

import (
	"context"
	"errors"
	"fmt"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/internal/evidence"
)

// CollectorConfig says where the agent finds its register token: exactly one of File and
// Env. Getting the token (GET .../token over mTLS, with a certificate allowed to update
// the service) is the business of whoever provisions the agent.
type CollectorConfig struct {
	// File is a file holding the token (white space around it is ignored).
	File string
	// Env is an environment variable holding the token.
	Env string
	// AfterUse says what Used does with File once the issuer accepted the token. Zero:
	// keep it (a spent token is useless to anyone who reads it).
	AfterUse attestor.AfterUse
}

// Collector hands the agent a register token it was given. It implements
// attestor.Collector and attestor.OneTime, and is safe for concurrent use.
type Collector struct {
	src evidence.Source
}

// NewCollector checks cfg and returns a Collector.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	src := evidence.Source{File: cfg.File, Env: cfg.Env, AfterUse: cfg.AfterUse, MaxLen: MaxTokenLength}
	if err := src.Validate("register token"); err != nil {
		return nil, err
	}
	return &Collector{src: src}, nil
}

// Collect reads the token afresh and checks that it looks like a register token (a
// compact JWS); it does not verify it, since only the issuer holds the keys. The target is
// not used: the token names its own service and instance.
func (c *Collector) Collect(ctx context.Context, _ attestor.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tok, err := c.src.Read("register token")
	if err != nil {
		return "", err
	}
	if !looksLikeJWS(tok) {
		return "", errors.New("register token: the configured value is not a compact JWS")
	}
	return tok, nil
}

// Used applies AfterUse to the token file.
func (c *Collector) Used(ctx context.Context) error {
	if err := c.src.Discard(); err != nil {
		return fmt.Errorf("register token: after use: %w", err)
	}
	return nil
}

var (
	_ attestor.Collector      = (*Collector)(nil)
	_ attestor.OneTime        = (*Collector)(nil)
	_ attestor.FormatVerifier = (*Verifier)(nil)
)
