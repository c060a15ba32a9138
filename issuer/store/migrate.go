package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
)

// migrationFiles holds the schema history. Each migration is NNNN_name.sql, shared by both
// backends, or, where their SQL differs, a pair NNNN_name.sqlite.sql and NNNN_name.postgres.sql.
// Versions start at 1 and have no gaps. A migration, once released, never changes: a schema
// change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step for one backend.
type migration struct {
	version int
	name    string // file name, recorded in schema_migrations
	sql     string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$`)

// loadMigrations returns the migrations for the backend named driver from fsys (a directory
// of migration files), in version order, checking that the versions are 1..n without gaps
// or duplicates.
func loadMigrations(fsys fs.FS, driver string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]migration{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql or NNNN_name.{sqlite,postgres}.sql", e.Name())
		}
		if m[3] != "" && m[3] != driver {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		if prev, dup := byVersion[v]; dup {
			return nil, fmt.Errorf("migration version %d for %s: both %s and %s", v, driver, prev.name, e.Name())
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		byVersion[v] = migration{version: v, name: e.Name(), sql: string(b)}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations for %s: expected version %d, found %s", driver, i+1, m.name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("migrations for %s: none found", driver)
	}
	return out, nil
}

// migrate brings the schema up to date: in one transaction (after the dialect's lock, so
// replicas starting together take turns) it creates schema_migrations if needed, reads the
// highest applied version, refuses a database newer than this binary, and applies and
// records every newer migration. Running it again changes nothing.
func (s *sqlStore) migrate(ctx context.Context, log *slog.Logger) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	ms, err := loadMigrations(sub, s.d.name)
	if err != nil {
		return err
	}
	return s.applyMigrations(ctx, log, ms)
}

// applyMigrations is migrate with the migrations given, so tests can supply their own.
func (s *sqlStore) applyMigrations(ctx context.Context, log *slog.Logger, ms []migration) error {
	latest := ms[len(ms)-1].version
	return inTx(ctx, s.w, func(ctx context.Context, tx querier) error {
		if s.d.lockMigrations != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
				return fmt.Errorf("lock for migration: %w", err)
			}
		}
		const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version BIGINT PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`
		if _, err := tx.ExecContext(ctx, create); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > latest {
			return fmt.Errorf("%w: the database is at schema version %d, this athenz-mesh knows versions up to %d; "+
				"run a newer athenz-mesh (downgrades are not supported)", ErrSchemaTooNew, current, latest)
		}
		for _, m := range ms[current:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", path.Join("migrations", m.name), err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, micros(s.now())); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
			log.Info("store: applied schema migration", "driver", s.d.name, "version", m.version, "file", m.name)
		}
		return nil
	})
}
