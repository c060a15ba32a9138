package ntoken

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// DefaultLifetime is the lifetime of the n-tokens a Collector makes: 10 minutes, as
// zts-svccert makes them.
const DefaultLifetime = 10 * time.Minute

// DefaultKeyID is the key id a Collector writes when none is configured: "0", Athenz's
// default.
const DefaultKeyID = "0"

// maxKeyFileSize bounds the private key file a Collector reads.
const maxKeyFileSize = 64 << 10

// CollectorConfig says how the agent signs n-tokens. KeyFile is required.
type CollectorConfig struct {
	// KeyFile is the service's PEM private key (RSA or ECDSA, unencrypted), read on every
	// Collect so that a rotated key is picked up.
	KeyFile string
	// KeyID is the id under which the public key is registered (k=). Empty: DefaultKeyID.
	KeyID string
	// Domain and Service name the service. Empty: the Target's. When both are set they
	// must equal the Target's (ignoring case), so an agent never signs for a service it
	// was not asked to register.
	Domain  string
	Service string
	// Lifetime is the token lifetime. Zero: DefaultLifetime.
	Lifetime time.Duration
	// Hostname is written as h= when set.
	Hostname string
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Collector signs n-tokens with a service private key. It implements attestor.Collector
// and is safe for concurrent use.
type Collector struct {
	cfg CollectorConfig
}

// NewCollector checks cfg and returns a Collector. The key file is not read here.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	var errs []error
	if cfg.KeyFile == "" {
		errs = append(errs, errors.New("a private key file is required"))
	}
	if cfg.KeyID == "" {
		cfg.KeyID = DefaultKeyID
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Lifetime < 0 {
		errs = append(errs, errors.New("lifetime must not be negative"))
	}
	if cfg.Domain != "" {
		if err := athenz.ValidateDomainName(cfg.Domain); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Service != "" {
		if err := athenz.ValidateSimpleName(cfg.Service); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("n-token collector: %w", err)
	}
	return &Collector{cfg: cfg}, nil
}

// Collect signs a fresh n-token for the target's service (or the configured one), valid
// from now for Lifetime.
func (c *Collector) Collect(ctx context.Context, t attestor.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	domain, service := c.cfg.Domain, c.cfg.Service
	if domain == "" {
		domain = t.Domain
	}
	if service == "" {
		service = t.Service
	}
	if (t.Domain != "" && !sameASCII(domain, t.Domain)) || (t.Service != "" && !sameASCII(service, t.Service)) {
		return "", fmt.Errorf("n-token: configured for %s, asked for %s", athenz.Principal(domain, service), athenz.Principal(t.Domain, t.Service))
	}
	if domain == "" || service == "" {
		return "", errors.New("n-token: no domain and service to sign for")
	}
	key, err := readKey(c.cfg.KeyFile)
	if err != nil {
		return "", err
	}
	now := c.cfg.Now()
	tok := &athenz.NToken{
		Domain: domain, Name: service, KeyID: c.cfg.KeyID, Hostname: c.cfg.Hostname,
		IssueTime: now, ExpiryTime: now.Add(c.cfg.Lifetime),
	}
	s, err := tok.Sign(key)
	if err != nil {
		return "", fmt.Errorf("n-token: %w", err)
	}
	return s, nil
}

func readKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("n-token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("n-token: read %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("n-token: %s is larger than %d bytes", path, maxKeyFileSize)
	}
	key, err := athenz.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("n-token: %s: %w", path, err)
	}
	return key, nil
}

// sameASCII compares two configured names ignoring case. Both come from the agent's own
// configuration, so Unicode folding is harmless here; the token is signed for domain and
// service as configured either way.
func sameASCII(a, b string) bool { return strings.EqualFold(a, b) }

var (
	_ attestor.Collector      = (*Collector)(nil)
	_ attestor.FormatVerifier = (*Verifier)(nil)
)
