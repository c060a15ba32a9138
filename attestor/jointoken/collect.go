package jointoken

import (
	"context"
	"fmt"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/internal/evidence"
)

// CollectorConfig says where the agent finds its join token: exactly one of File and Env.
type CollectorConfig struct {
	// File is a file holding the token (white space around it is ignored).
	File string
	// Env is an environment variable holding the token.
	Env string
	// AfterUse says what Used does with File once the issuer accepted the token. Zero:
	// keep it. A spent token is worthless, but removing it keeps secrets off disks;
	// AfterUseRemove needs write access to the directory, AfterUseTruncate to the file.
	AfterUse attestor.AfterUse
}

// Collector hands the agent its join token. It implements attestor.Collector and
// attestor.OneTime and is safe for concurrent use.
type Collector struct {
	src evidence.Source
}

// NewCollector checks cfg and returns a Collector.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	src := evidence.Source{File: cfg.File, Env: cfg.Env, AfterUse: cfg.AfterUse, MaxLen: Length}
	if err := src.Validate("join token"); err != nil {
		return nil, err
	}
	return &Collector{src: src}, nil
}

// Collect reads the token afresh and checks its shape (see Check). The target is not
// used: the issuer knows which service the token was created for.
func (c *Collector) Collect(ctx context.Context, _ attestor.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tok, err := c.src.Read("join token")
	if err != nil {
		return "", err
	}
	if err := Check(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// Used applies AfterUse to the token file.
func (c *Collector) Used(ctx context.Context) error {
	if err := c.src.Discard(); err != nil {
		return fmt.Errorf("join token: after use: %w", err)
	}
	return nil
}

var (
	_ attestor.Collector      = (*Collector)(nil)
	_ attestor.OneTime        = (*Collector)(nil)
	_ attestor.FormatVerifier = (*Verifier)(nil)
)
