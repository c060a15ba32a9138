package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Driver names for Config.Driver.
const (
	// DriverSQLite selects the embedded SQLite backend: one issuer process, nothing to
	// install.
	DriverSQLite = "sqlite"
	// DriverPostgres selects the PostgreSQL backend: any number of issuer replicas.
	DriverPostgres = "postgres"
)

// DefaultFileName is the SQLite database file created in Config.DataDir when Config.Path is
// empty.
const DefaultFileName = "issuer.db"

// Defaults applied to zero Config fields.
const (
	// DefaultCertificateRetention is Config.CertificateRetention's default.
	DefaultCertificateRetention = 30 * 24 * time.Hour
	// DefaultRevocationRetention is Config.RevocationRetention's default.
	DefaultRevocationRetention = 365 * 24 * time.Hour
	// DefaultBusyTimeout is Config.BusyTimeout's default.
	DefaultBusyTimeout = 10 * time.Second
	// DefaultPostgresMaxConns is Config.MaxConns's default for PostgreSQL.
	DefaultPostgresMaxConns = 10
	// DefaultSQLiteReaders is Config.MaxConns's default for SQLite (reader connections).
	DefaultSQLiteReaders = 4
)

// Config selects and tunes a backend. The zero value of every field has a documented
// meaning; only where the data lives (Path or DataDir for SQLite, DSN for PostgreSQL) must be
// given.
type Config struct {
	// Driver is DriverSQLite or DriverPostgres. Empty means DriverPostgres when DSN is set and
	// DriverSQLite otherwise.
	Driver string

	// Path is the SQLite database file. Empty means DefaultFileName inside DataDir. A missing
	// file is created with mode 0600 (SQLite gives its -wal and -shm files the same mode).
	Path string
	// DataDir is the issuer's data directory, used when Path is empty. A missing directory is
	// created with mode 0700. SQLite needs Path or DataDir; PostgreSQL ignores both.
	DataDir string
	// BusyTimeout is how long a SQLite connection waits for a lock held by another process
	// on the same file before it fails with SQLITE_BUSY. Within one process writes never
	// wait on each other's locks (see the package's single-writer pool). Zero means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration

	// DSN is the PostgreSQL connection string, required for DriverPostgres, as a URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or as keyword/value pairs
	// (host=/run/postgresql dbname=athenz user=issuer). libpq's environment variables
	// (PGHOST, PGPASSWORD, PGSSLROOTCERT, ...) and ~/.pgpass fill in what it leaves out. Extra
	// parameters such as search_path=athenz are sent to the server as run-time settings.
	DSN string

	// MaxConns bounds this process's open PostgreSQL connections, or its SQLite reader
	// connections (SQLite always has exactly one writer connection). Zero means
	// DefaultPostgresMaxConns for PostgreSQL and DefaultSQLiteReaders for SQLite.
	MaxConns int

	// CertificateRetention is how long a certificate record is kept after the certificate
	// expired, before Prune deletes it. Zero means DefaultCertificateRetention.
	CertificateRetention time.Duration
	// RevocationRetention is how long Prune keeps a revoked instance that has no certificate
	// records left; while it is kept the instance cannot register again. Zero means
	// DefaultRevocationRetention.
	RevocationRetention time.Duration

	// Now is the store's clock (record and token creation times, join token expiry). Nil
	// means time.Now.
	Now func() time.Time
	// Logger receives migration progress. Nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults validates c and fills in its zero fields, reporting every problem at once.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Driver == "" {
		c.Driver = DriverSQLite
		if c.DSN != "" {
			c.Driver = DriverPostgres
		}
	}
	switch c.Driver {
	case DriverSQLite:
		if c.Path == "" && c.DataDir == "" {
			errs = append(errs, errors.New("sqlite needs a database path or a data directory"))
		}
		if c.Path == "" {
			c.Path = filepath.Join(c.DataDir, DefaultFileName)
		}
		if c.DSN != "" {
			errs = append(errs, errors.New("a DSN was given but the driver is sqlite"))
		}
		if c.MaxConns == 0 {
			c.MaxConns = DefaultSQLiteReaders
		}
	case DriverPostgres:
		if c.DSN == "" {
			errs = append(errs, errors.New("postgres needs a DSN"))
		}
		if c.MaxConns == 0 {
			c.MaxConns = DefaultPostgresMaxConns
		}
	default:
		errs = append(errs, fmt.Errorf("unknown driver %q (want %q or %q)", c.Driver, DriverSQLite, DriverPostgres))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max connections %d is negative", c.MaxConns))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("busy timeout %s is negative", c.BusyTimeout))
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.CertificateRetention < 0 {
		errs = append(errs, fmt.Errorf("certificate retention %s is negative", c.CertificateRetention))
	}
	if c.CertificateRetention == 0 {
		c.CertificateRetention = DefaultCertificateRetention
	}
	if c.RevocationRetention < 0 {
		errs = append(errs, fmt.Errorf("revocation retention %s is negative", c.RevocationRetention))
	}
	if c.RevocationRetention == 0 {
		c.RevocationRetention = DefaultRevocationRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("store config: %w: %w", ErrInvalid, err)
	}
	return c, nil
}

// Open connects to the configured backend, brings its schema up to date and returns the
// store. Migrations are embedded in the binary and applied in one transaction, recorded in
// the schema_migrations table; opening an up-to-date database changes nothing, and replicas
// opening one database together take turns. Open fails with ErrSchemaTooNew when the
// database was migrated by a newer athenz-mesh. ctx bounds the connection and the
// migration, not the store's lifetime.
func Open(ctx context.Context, cfg Config) (Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var s *sqlStore
	switch cfg.Driver {
	case DriverSQLite:
		s, err = openSQLite(cfg)
	default:
		s, err = openPostgres(cfg)
	}
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx, cfg.Logger); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open %s store: %w", cfg.Driver, err)
	}
	return s, nil
}
