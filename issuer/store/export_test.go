package store

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
)

// MigrationNames exposes loadMigrations to the external tests.
func MigrationNames(fsys fs.FS, driver string) ([]string, error) {
	ms, err := loadMigrations(fsys, driver)
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names, err
}

// ApplyMigrations applies the migrations in fsys to s, as Open applies the embedded ones.
func ApplyMigrations(ctx context.Context, s Store, fsys fs.FS) error {
	ss, ok := s.(*sqlStore)
	if !ok {
		return fmt.Errorf("not a SQL store: %T", s)
	}
	ms, err := loadMigrations(fsys, ss.d.name)
	if err != nil {
		return err
	}
	return ss.applyMigrations(ctx, slog.New(slog.DiscardHandler), ms)
}
