package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// dialect holds what differs between the backends. The queries themselves are shared: both
// backends accept $1-style placeholders, INSERT ... ON CONFLICT and RETURNING.
type dialect struct {
	// name is the driver name; it also selects migration files (NNNN_name.<name>.sql).
	name string
	// lockMigrations, when set, runs first in the migration transaction so that replicas
	// starting together migrate one after another.
	lockMigrations string
	// groupCommit selects the group-commit writer and prepared statements (SQLite) over a
	// transaction per write (PostgreSQL).
	groupCommit bool
}

// sqlStore implements Store over database/sql for both backends.
//
// Writes go through wr and reads through r. For SQLite, w is a pool of exactly one
// connection whose transactions begin IMMEDIATE (taking the write lock up front), used by a
// group-commit writer (see groupWriter), so that writers in this process queue in Go instead
// of failing with SQLITE_BUSY and share fsyncs; r is a separate read-only pool that WAL mode
// lets read while the writer writes. For PostgreSQL, w and r are the same pool, each write
// is its own transaction, and the server's locks order the writers.
type sqlStore struct {
	w, r      *sql.DB
	wr        writer     // runs every write; owns w for SQLite; nil until start
	readStmts statements // prepared on r (SQLite only)
	d         dialect
	now       func() time.Time
	certTTL   time.Duration // Config.CertificateRetention
	revTTL    time.Duration // Config.RevocationRetention
}

// start readies an opened store: it checks the connection, migrates the schema and starts
// the writer.
func (s *sqlStore) start(ctx context.Context, log *slog.Logger) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := s.migrate(ctx, log); err != nil {
		return err
	}
	if !s.d.groupCommit {
		s.wr = txWriter{s.w}
		return nil
	}
	ws, err := prepare(ctx, s.w, writeQueries)
	if err != nil {
		return err
	}
	if s.readStmts, err = prepare(ctx, s.r, readQueries); err != nil {
		_ = ws.close()
		return err
	}
	s.wr = newGroupWriter(s.w, ws)
	return nil
}

// read returns what reads run on.
func (s *sqlStore) read() querier { return preparedQuerier{base: s.r, stmts: s.readStmts} }

// Close finishes accepted writes and closes both pools.
func (s *sqlStore) Close() error {
	var errs []error
	if s.wr != nil {
		s.wr.close()
		if g, ok := s.wr.(*groupWriter); ok {
			errs = append(errs, g.stmts.close())
		}
	}
	errs = append(errs, s.readStmts.close(), s.w.Close())
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	return errors.Join(errs...)
}

// micros converts a time to the stored form.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts the stored form back to a UTC time.
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// fromNullMicros converts a nullable stored time; NULL becomes the zero time.
func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}
