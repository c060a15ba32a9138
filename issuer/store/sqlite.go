package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
)

// openSQLite opens the database file named by cfg.Path (creating it, and its directory, with
// owner-only permissions) as two pools: one writer connection and cfg.MaxConns readers.
func openSQLite(cfg Config) (*sqlStore, error) {
	path := cfg.Path
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite path %q: %w: it must not contain '?' or '#'", path, ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite data directory: %w", err)
	}
	// Create the file ourselves so that it is 0600 whatever the umask; SQLite then gives the
	// -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite database file: %w", err)
	}
	fi, err := f.Stat()
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("sqlite database file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		cfg.Logger.Warn("store: sqlite database file is readable by others; chmod 600 it",
			"path", path, "mode", fi.Mode().Perm().String())
	}

	busy := fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds())
	// synchronous(FULL): in WAL mode, every commit is fsynced before PutCertificate or
	// UseOnce returns, so a certificate handed out, or a token marked used, survives a power
	// loss. _txlock=immediate: transactions take the write lock when they begin, not when
	// they first write, so two writers (this process and, say, a backup tool or a second
	// process on the same file) wait on busy_timeout instead of deadlocking.
	writerQuery := url.Values{
		"_pragma": {busy, "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"},
		"_txlock": {"immediate"},
	}
	readerQuery := url.Values{"_pragma": {busy, "query_only(1)"}}

	w, err := sqliteDB(path + "?" + writerQuery.Encode())
	if err != nil {
		return nil, err
	}
	// One connection: SQLite allows one writer at a time anyway, and the group-commit writer
	// (the only user of this pool after migration) queues writes in Go, where they never
	// fail with SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	var mode string
	if err := w.QueryRowContext(context.Background(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite %s: journal mode is %q, not WAL (is the file on a network file system?)", path, mode)
	}

	r, err := sqliteDB(path + "?" + readerQuery.Encode())
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(cfg.MaxConns)
	r.SetMaxIdleConns(cfg.MaxConns)

	return &sqlStore{
		w: w, r: r,
		d:       dialect{name: DriverSQLite, groupCommit: true},
		now:     cfg.Now,
		certTTL: cfg.CertificateRetention,
		revTTL:  cfg.RevocationRetention,
	}, nil
}

// sqliteDB opens a pool on dsn without registering anything globally.
func sqliteDB(dsn string) (*sql.DB, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	return sql.OpenDB(c), nil
}
