package k8s

import (
	"context"
	"errors"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/internal/evidence"
)

// DefaultTokenFile is where the agent's pod spec projects its token by convention: a
// serviceAccountToken volume source with audience "athenz-mesh", mounted at
// /var/run/secrets/tokens, path athenz-mesh-token.
const DefaultTokenFile = "/var/run/secrets/tokens/athenz-mesh-token"

// CollectorConfig says where the agent reads its projected token.
type CollectorConfig struct {
	// TokenFile is the projected token file. Empty: DefaultTokenFile.
	TokenFile string
}

// Collector reads the projected service-account token. It implements
// attestor.Collector and is safe for concurrent use.
type Collector struct {
	src evidence.Source
}

// NewCollector returns a Collector. The file is not read here: it may not exist until
// the kubelet has mounted it.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultTokenFile
	}
	return &Collector{src: evidence.Source{File: cfg.TokenFile, MaxLen: MaxTokenLength}}, nil
}

// Collect reads the token file afresh on every call (the kubelet rewrites it before it
// expires) and checks it looks like a JWS. The target is not used: the token names its
// namespace, service account and pod.
func (c *Collector) Collect(ctx context.Context, _ attestor.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tok, err := c.src.Read("kubernetes service-account token")
	if err != nil {
		return "", err
	}
	if looksLikeJWS(tok) {
		return tok, nil
	}
	return "", errors.New("kubernetes service-account token: " + c.src.File + " does not hold a JWS")
}

var _ attestor.Collector = (*Collector)(nil)
