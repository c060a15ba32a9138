package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Statements of the hot paths. The SQLite backend prepares them once per connection (its
// driver would otherwise parse every statement every time, which was a quarter of the CPU
// time of issuance); pgx caches prepared statements by itself.
var (
	writeQueries = []string{
		swapCurrentSQL, lockInstanceSQL, insertCertificateSQL, revokeInstanceSQL,
		revokeCertificatesSQL, useOnceSQL, createJoinTokenSQL, burnJoinTokenSQL,
		savepointSQL, rollbackToSavepointSQL, releaseSavepointSQL,
	}
	readQueries = []string{certificateBySerialSQL, currentInstanceSQL, isRevokedSQL, joinTokenByHashSQL}
)

// statements maps query text to a statement prepared on one pool.
type statements map[string]*sql.Stmt

// prepare prepares queries on db. With a pool of one connection (SQLite's writer) that
// connection must be free: preparing inside a transaction on it would wait forever.
func prepare(ctx context.Context, db *sql.DB, queries []string) (statements, error) {
	st := statements{}
	for _, q := range queries {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			_ = st.close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		st[q] = s
	}
	return st, nil
}

// close closes every statement.
func (st statements) close() error {
	var errs []error
	for _, s := range st {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// preparedQuerier runs the queries it has statements for as those statements (inside tx
// when tx is set) and passes any other query to base.
type preparedQuerier struct {
	base  querier
	tx    *sql.Tx
	stmts statements
}

// stmt returns the prepared statement for query, or nil.
func (p preparedQuerier) stmt(ctx context.Context, query string) *sql.Stmt {
	s := p.stmts[query]
	if s == nil || p.tx == nil {
		return s
	}
	return p.tx.StmtContext(ctx, s)
}

// ExecContext implements querier.
func (p preparedQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := p.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return p.base.ExecContext(ctx, query, args...)
}

// QueryRowContext implements querier.
func (p preparedQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := p.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return p.base.QueryRowContext(ctx, query, args...)
}
