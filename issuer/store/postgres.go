package store

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// migrationLockKey is the PostgreSQL advisory lock that replicas take while migrating
// ("athenzms" in ASCII).
const migrationLockKey = 0x617468656e7a6d73

// openPostgres opens a pool of at most cfg.MaxConns connections to cfg.DSN.
func openPostgres(cfg Config) (*sqlStore, error) {
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx redacts the password from the DSN it quotes.
		return nil, fmt.Errorf("postgres DSN: %w: %w", ErrInvalid, err)
	}
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns)
	return &sqlStore{
		w: db, r: db,
		d: dialect{
			name:           DriverPostgres,
			lockMigrations: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(migrationLockKey)),
		},
		now:     cfg.Now,
		certTTL: cfg.CertificateRetention,
		revTTL:  cfg.RevocationRetention,
	}, nil
}
