package evidence

import (
	"context"
	"fmt"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Collector hands the agent a single-use token kept in a file or an environment variable:
// it reads the token afresh on every Collect, checks its shape, and applies the source's
// AfterUse once the issuer accepted it. It implements attestor.Collector and
// attestor.OneTime and is safe for concurrent use. The join-token and register-token
// collectors are this with their own name and shape check.
type Collector struct {
	src   Source
	what  string
	check func(string) error
}

// NewCollector validates src and returns a Collector for tokens called what (for
// messages), each checked by check before it is handed out.
func NewCollector(src Source, what string, check func(string) error) (*Collector, error) {
	if err := src.Validate(what); err != nil {
		return nil, err
	}
	return &Collector{src: src, what: what, check: check}, nil
}

// Collect reads the token and checks its shape; it does not verify it (only the issuer
// can). The target is not used: the token names its own service.
func (c *Collector) Collect(ctx context.Context, _ attestor.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tok, err := c.src.Read(c.what)
	if err != nil {
		return "", err
	}
	if err := c.check(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// Used applies the source's AfterUse to the token file.
func (c *Collector) Used(context.Context) error {
	if err := c.src.Discard(); err != nil {
		return fmt.Errorf("%s: after use: %w", c.what, err)
	}
	return nil
}
