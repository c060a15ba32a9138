package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// errClosed is returned by writes to a closed store.
var errClosed = errors.New("store is closed")

// querier is what a write needs: a transaction, or for a single statement on PostgreSQL, the
// pool itself.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// writeFunc is one atomic write: its statements commit together or not at all.
type writeFunc func(ctx context.Context, q querier) error

// writer runs writes.
type writer interface {
	// write runs fn atomically and returns once its outcome is durable (or it failed).
	// single says that fn runs exactly one statement and so needs no transaction of its own.
	write(ctx context.Context, single bool, fn writeFunc) error
	// close stops accepting writes and finishes those accepted.
	close()
}

// txWriter runs each write in its own transaction (PostgreSQL: the server orders
// concurrent writers and already shares one WAL flush among commits that arrive together).
type txWriter struct{ db *sql.DB }

func (w txWriter) write(ctx context.Context, single bool, fn writeFunc) error {
	if single {
		return fn(ctx, w.db)
	}
	return inTx(ctx, w.db, fn)
}

func (txWriter) close() {}

// inTx runs fn in a transaction on db, committing when fn returns nil.
func inTx(ctx context.Context, db *sql.DB, fn writeFunc) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// groupWriter is SQLite's writer: a group commit. SQLite has one writer at a time and, with
// synchronous=FULL, pays an fsync per commit, which caps one-commit-per-write at roughly
// one over the disk's fsync time (about 1,000 writes/s on this project's CI machine). So
// writes queue (a bounded queue: callers block when it is full), and a single goroutine runs
// everything queued in one transaction, each write inside its own savepoint so that a
// failing write rolls back alone, then commits once.
//
// Durability is unchanged: every caller returns only after the commit that contains its
// write was fsynced. What changes: a write waits for the batch ahead of it (no timer: a
// batch is simply what queued up during the previous commit, so a lone writer never waits),
// and when a commit itself fails (disk full, I/O error) every write in that batch fails
// with it and none is kept.
type groupWriter struct {
	db       *sql.DB
	stmts    statements // prepared on db's only connection
	maxBatch int
	queue    chan *writeReq

	mu     sync.RWMutex // held for reading while enqueuing, for writing to close
	closed bool
	done   chan struct{} // closed when run returns
}

// writeReq is one queued write and where its outcome goes.
type writeReq struct {
	ctx    context.Context
	single bool
	fn     writeFunc
	result chan error // buffered, one value
}

// Group commit sizing.
const (
	groupQueueLen = 1024
	groupMaxBatch = 256
)

// Savepoint statements; every write in a batch of more than one runs inside one.
const (
	savepointSQL           = "SAVEPOINT w"
	rollbackToSavepointSQL = "ROLLBACK TO w"
	releaseSavepointSQL    = "RELEASE w"
)

// newGroupWriter starts the writer on db, a pool of exactly one connection, on which stmts
// were prepared.
func newGroupWriter(db *sql.DB, stmts statements) *groupWriter {
	g := &groupWriter{
		db: db, stmts: stmts, maxBatch: groupMaxBatch,
		queue: make(chan *writeReq, groupQueueLen), done: make(chan struct{}),
	}
	go g.run()
	return g
}

// write queues fn and waits for its outcome. Once queued, it waits even if ctx ends: the
// write may already be committed, and the caller must not think otherwise. ctx ending
// before the write starts cancels it.
func (g *groupWriter) write(ctx context.Context, single bool, fn writeFunc) error {
	r := &writeReq{ctx: ctx, single: single, fn: fn, result: make(chan error, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return errClosed
	}
	select {
	case g.queue <- r:
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	g.mu.RUnlock()
	return <-r.result
}

// close lets queued writes finish and stops the goroutine.
func (g *groupWriter) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.queue)
	}
	g.mu.Unlock()
	<-g.done
}

// run commits batches until the queue is closed and drained.
func (g *groupWriter) run() {
	defer close(g.done)
	batch := make([]*writeReq, 0, g.maxBatch)
	for r := range g.queue {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < g.maxBatch {
			select {
			case r, ok := <-g.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		g.commit(batch)
	}
}

// commit runs one batch in one transaction and delivers every outcome.
func (g *groupWriter) commit(batch []*writeReq) {
	results := make([]error, len(batch))
	fail := func(err error) {
		for i := range batch {
			batch[i].result <- err
		}
	}
	// The batch's statements must not see the callers' cancellation: interrupting SQLite
	// mid-statement rolls back the whole transaction, other callers' writes included.
	ctx := context.Background()
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin transaction: %w", err))
		return
	}
	q := preparedQuerier{base: tx, tx: tx, stmts: g.stmts}
	savepoints := len(batch) > 1
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if !savepoints {
			results[i] = r.fn(context.WithoutCancel(r.ctx), q)
			continue
		}
		if _, err := q.ExecContext(ctx, savepointSQL); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		results[i] = r.fn(context.WithoutCancel(r.ctx), q)
		if results[i] != nil {
			if _, err := q.ExecContext(ctx, rollbackToSavepointSQL); err != nil {
				_ = tx.Rollback()
				fail(fmt.Errorf("roll back to savepoint after %w: %w", results[i], err))
				return
			}
		}
		if _, err := q.ExecContext(ctx, releaseSavepointSQL); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if !savepoints && results[0] != nil {
		_ = tx.Rollback()
		batch[0].result <- results[0]
		return
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, r := range batch {
		r.result <- results[i]
	}
}
