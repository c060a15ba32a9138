package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Bounds on UseOnce arguments, so that a caller passing attacker-controlled ids cannot fill
// the table with huge keys.
const (
	maxUseKindLen = 64
	maxUseIDLen   = 512
)

// UseOnce implements Store.
func (s *sqlStore) UseOnce(ctx context.Context, kind, id string, expires time.Time) error {
	if kind == "" || len(kind) > maxUseKindLen || id == "" || len(id) > maxUseIDLen || expires.IsZero() {
		return fmt.Errorf("use once: %w: kind (1-%d bytes), id (1-%d bytes) and expiry are required",
			ErrInvalid, maxUseKindLen, maxUseIDLen)
	}
	now := micros(s.now())
	var n int64
	err := s.wr.write(ctx, true, func(ctx context.Context, tx querier) error {
		res, err := tx.ExecContext(ctx, useOnceSQL, kind, id, now, micros(expires))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("use %s %q: %w", kind, id, err)
	}
	if n == 0 {
		return fmt.Errorf("use %s %q: %w", kind, id, ErrAlreadyUsed)
	}
	return nil
}

// CreateJoinToken implements Store.
func (s *sqlStore) CreateJoinToken(ctx context.Context, t JoinToken) error {
	if len(t.IDHash) != sha256.Size || t.Domain == "" || t.Service == "" || t.ExpiresAt.IsZero() {
		return fmt.Errorf("create join token: %w: a %d-byte SHA-256 hash, domain, service and expiry are required",
			ErrInvalid, sha256.Size)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	id := hex.EncodeToString(t.IDHash)
	var n int64
	err := s.wr.write(ctx, true, func(ctx context.Context, tx querier) error {
		res, err := tx.ExecContext(ctx, createJoinTokenSQL, id, t.Domain, t.Service, t.CreatedBy, micros(t.CreatedAt), micros(t.ExpiresAt))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("create join token for %s.%s: %w", t.Domain, t.Service, err)
	}
	if n == 0 {
		return fmt.Errorf("create join token for %s.%s: %w", t.Domain, t.Service, ErrExists)
	}
	return nil
}

const (
	// useOnceSQL inserts a single-use mark. The primary key (kind, id) decides: of racing
	// inserts, on one server or many, exactly one inserts a row.
	useOnceSQL = `INSERT INTO single_use (kind, id, used_at, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (kind, id) DO NOTHING`

	createJoinTokenSQL = `INSERT INTO join_tokens (id_hash, domain, service, created_by, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id_hash) DO NOTHING`

	joinTokenColumns = `id_hash, domain, service, created_by, created_at, expires_at, used_at`

	// burnJoinTokenSQL checks and consumes in one statement: a concurrent burn of the same
	// token waits for this row's lock (PostgreSQL) or for the write lock (SQLite), then finds
	// used_at set and updates nothing.
	burnJoinTokenSQL = `UPDATE join_tokens SET used_at = $2
WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2
RETURNING ` + joinTokenColumns

	joinTokenByHashSQL = `SELECT ` + joinTokenColumns + ` FROM join_tokens WHERE id_hash = $1`
)

// scanJoinToken reads joinTokenColumns.
func scanJoinToken(row interface{ Scan(...any) error }) (JoinToken, error) {
	var t JoinToken
	var id string
	var createdAt, expiresAt int64
	var usedAt sql.NullInt64
	if err := row.Scan(&id, &t.Domain, &t.Service, &t.CreatedBy, &createdAt, &expiresAt, &usedAt); err != nil {
		return JoinToken{}, err
	}
	h, err := hex.DecodeString(id)
	if err != nil {
		return JoinToken{}, fmt.Errorf("stored join token hash %q: %w", id, err)
	}
	t.IDHash = h
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromMicros(createdAt), fromMicros(expiresAt), fromNullMicros(usedAt)
	return t, nil
}

// BurnJoinToken implements Store.
func (s *sqlStore) BurnJoinToken(ctx context.Context, idHash []byte) (JoinToken, error) {
	if len(idHash) != sha256.Size {
		return JoinToken{}, fmt.Errorf("burn join token: %w: the hash must be %d bytes", ErrInvalid, sha256.Size)
	}
	id := hex.EncodeToString(idHash)
	now := micros(s.now())
	var t JoinToken
	err := s.wr.write(ctx, true, func(ctx context.Context, tx querier) error {
		var err error
		t, err = scanJoinToken(tx.QueryRowContext(ctx, burnJoinTokenSQL, id, now))
		return err
	})
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return JoinToken{}, fmt.Errorf("burn join token: %w", err)
	}
	// Nothing burned: say why. A row's used_at and expiry never go back, so reading them
	// after the failed update gives the reason it failed.
	t, err = scanJoinToken(s.read().QueryRowContext(ctx, joinTokenByHashSQL, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return JoinToken{}, fmt.Errorf("burn join token: %w", ErrNotFound)
	case err != nil:
		return JoinToken{}, fmt.Errorf("burn join token: %w", err)
	case !t.UsedAt.IsZero():
		return JoinToken{}, fmt.Errorf("burn join token for %s.%s: used at %s: %w",
			t.Domain, t.Service, t.UsedAt.Format(time.RFC3339), ErrAlreadyUsed)
	default:
		return JoinToken{}, fmt.Errorf("burn join token for %s.%s: expired at %s: %w",
			t.Domain, t.Service, t.ExpiresAt.Format(time.RFC3339), ErrExpired)
	}
}
