package store

import (
	"context"
	"fmt"
	"time"
)

// pruneBatch is how many rows one prune statement deletes. Each batch is its own short
// transaction, so issuance waits at most for one batch (SQLite has a single writer).
const pruneBatch = 500

// Prune implements Store.
func (s *sqlStore) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	var p Pruned
	certCutoff := micros(now.Add(-s.certTTL))
	steps := []struct {
		what  string
		query string
		args  []any
		count *int64
	}{
		{
			what: "single-use marks",
			query: `DELETE FROM single_use WHERE (kind, id) IN
(SELECT kind, id FROM single_use WHERE expires_at < $1 LIMIT $2)`,
			args:  []any{micros(now)},
			count: &p.SingleUse,
		},
		{
			what: "join tokens",
			query: `DELETE FROM join_tokens WHERE id_hash IN
(SELECT id_hash FROM join_tokens WHERE expires_at < $1 LIMIT $2)`,
			args:  []any{micros(now)},
			count: &p.JoinTokens,
		},
		{
			what: "certificate records",
			query: `DELETE FROM certificates WHERE serial IN
(SELECT serial FROM certificates WHERE not_after < $1 LIMIT $2)`,
			args:  []any{certCutoff},
			count: &p.Certificates,
		},
		{
			// The conditions on the instance row itself are repeated outside the sub-query:
			// PostgreSQL re-checks those (and only those) against a row that a concurrent
			// PutCertificate touched while this statement waited for its lock, and that
			// PutCertificate set updated_at to now.
			what: "instances",
			query: `DELETE FROM instances
WHERE updated_at < $1 AND (revoked_at IS NULL OR revoked_at < $3)
AND (provider, domain, service, instance_id) IN (
	SELECT i.provider, i.domain, i.service, i.instance_id FROM instances i
	WHERE i.updated_at < $1 AND (i.revoked_at IS NULL OR i.revoked_at < $3)
	AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.provider = i.provider
		AND c.domain = i.domain AND c.service = i.service AND c.instance_id = i.instance_id)
	LIMIT $2)`,
			args:  []any{certCutoff, micros(now.Add(-s.revTTL))},
			count: &p.Instances,
		},
	}
	for _, st := range steps {
		for {
			if err := ctx.Err(); err != nil {
				return p, fmt.Errorf("prune %s: %w", st.what, err)
			}
			args := append([]any{st.args[0], pruneBatch}, st.args[1:]...)
			var n int64
			err := s.wr.write(ctx, true, func(ctx context.Context, tx querier) error {
				res, err := tx.ExecContext(ctx, st.query, args...)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return p, fmt.Errorf("prune %s: %w", st.what, err)
			}
			*st.count += n
			if n < pruneBatch {
				break
			}
		}
	}
	return p, nil
}
