package jointoken

import (
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

// Collector hands the agent its join token, checked with Check. It implements attestor.Collector and
// attestor.OneTime and is safe for concurrent use.
type Collector struct {
	*evidence.Collector
}

// NewCollector checks cfg and returns a Collector.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	src := evidence.Source{File: cfg.File, Env: cfg.Env, AfterUse: cfg.AfterUse, MaxLen: Length}
	c, err := evidence.NewCollector(src, "join token", Check)
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
