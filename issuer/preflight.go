package issuer

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Preflight checks what can be checked without creating anything or binding a port:
// the configuration, the domain files, and the TLS key pair when one is configured. It is
// 'athenz-mesh issuer --check-config'.
func Preflight(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if _, err := policy.LoadDir(cfg.Domains.Dir); err != nil {
		return fmt.Errorf("load domains from %s: %w", domainsDirAbs(cfg.Domains.Dir), err)
	}
	if cfg.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return fmt.Errorf("tls server certificate: %w", err)
		}
	}
	return nil
}

// OpenStore opens the store the configuration names (store.path, store.dsn, or
// issuer.db in data_dir), for tools that manage it beside a running issuer
// ('athenz-mesh issuer join-token create'). The caller closes it.
func OpenStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	st, err := store.Open(ctx, store.Config{
		Path: cfg.Store.Path, DataDir: cfg.DataDir, DSN: cfg.Store.DSN, MaxConns: cfg.Store.MaxConns,
		CertificateRetention: cfg.Store.CertificateRetention, RevocationRetention: cfg.Store.RevocationRetention,
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("issuer store: %w", err)
	}
	return st, nil
}
