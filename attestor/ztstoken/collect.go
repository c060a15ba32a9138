package ztstoken

import (
	"errors"

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

// Collector hands the agent a register token it was given, checked to look like a compact JWS (only the issuer can verify it). It implements attestor.Collector and
// attestor.OneTime and is safe for concurrent use.
type Collector struct {
	*evidence.Collector
}

// NewCollector checks cfg and returns a Collector.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	src := evidence.Source{File: cfg.File, Env: cfg.Env, AfterUse: cfg.AfterUse, MaxLen: MaxTokenLength}
	c, err := evidence.NewCollector(src, "register token", func(tok string) error {
		if !looksLikeJWS(tok) {
			return errors.New("register token: the configured value is not a compact JWS")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Collector{c}, nil
}

var (
	_ attestor.Collector      = (*Collector)(nil)
	_ attestor.OneTime        = (*Collector)(nil)
	_ attestor.FormatVerifier = (*Verifier)(nil)
)
