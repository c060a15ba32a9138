package store

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
)

// newTestGroupWriter returns a group writer on a new SQLite file with a table t(k PRIMARY
// KEY), and a function that lists the table's keys.
func newTestGroupWriter(t *testing.T) (*groupWriter, func() []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.db")
	db, err := sqliteDB(path + "?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	g := newGroupWriter(db, nil)
	t.Cleanup(g.close)
	keys := func() []string {
		rows, err := db.Query(`SELECT k FROM t ORDER BY k`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			out = append(out, k)
		}
		return out
	}
	return g, keys
}

// insert returns a write that inserts k.
func insert(k string) writeFunc {
	return func(ctx context.Context, q querier) error {
		_, err := q.ExecContext(ctx, `INSERT INTO t (k) VALUES ($1)`, k)
		return err
	}
}

// blockWriter makes g run a write that inserts k only after release is closed, and returns
// once that write is running, so that writes made from then on queue behind it. The write's
// outcome goes to the returned channel.
func blockWriter(t *testing.T, g *groupWriter, k string, release <-chan struct{}) <-chan error {
	t.Helper()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- g.write(t.Context(), true, func(ctx context.Context, q querier) error {
			close(started)
			<-release
			return insert(k)(ctx, q)
		})
	}()
	<-started
	return done
}

// waitQueued waits until n writes are queued.
func waitQueued(g *groupWriter, n int) {
	for len(g.queue) < n {
		runtime.Gosched()
	}
}

// TestGroupWriterBatch holds the writer inside one write while others queue, so that they
// commit as one batch, and checks that a failing write in the batch rolls back alone.
func TestGroupWriterBatch(t *testing.T) {
	g, keys := newTestGroupWriter(t)
	release := make(chan struct{})
	firstDone := blockWriter(t, g, "a", release)

	errBoom := errors.New("boom")
	writes := map[string]writeFunc{
		"b": insert("b"),
		"c": func(ctx context.Context, q querier) error {
			// Half-done, then failing: its insert must not survive.
			if err := insert("c")(ctx, q); err != nil {
				return err
			}
			return errBoom
		},
		"d":   insert("d"),
		"dup": insert("a"), // conflicts with the first write, committed just before
	}
	results := make(map[string]chan error)
	for name, w := range writes {
		ch := make(chan error, 1)
		results[name] = ch
		go func() { ch <- g.write(t.Context(), true, w) }()
	}
	waitQueued(g, len(writes))
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatalf("first write: %v", err)
	}
	for name, want := range map[string]error{"b": nil, "c": errBoom, "d": nil} {
		if err := <-results[name]; !errors.Is(err, want) {
			t.Errorf("write %s: %v, want %v", name, err, want)
		}
	}
	if err := <-results["dup"]; err == nil {
		t.Error("duplicate insert succeeded")
	}
	if got := keys(); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "d" {
		t.Errorf("table holds %v, want [a b d]", got)
	}
}

func TestGroupWriterCanceledBeforeStart(t *testing.T) {
	g, keys := newTestGroupWriter(t)
	release := make(chan struct{})
	firstDone := blockWriter(t, g, "a", release)
	ctx, cancel := context.WithCancel(t.Context())
	queued := make(chan error, 1)
	go func() { queued <- g.write(ctx, true, insert("x")) }()
	waitQueued(g, 1)
	cancel()
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("write canceled while queued: %v", err)
	}
	if err := g.write(ctx, true, insert("y")); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a canceled context: %v", err)
	}
	if got := keys(); len(got) != 1 {
		t.Fatalf("table holds %v, want only the first write", got)
	}
}

func TestGroupWriterClose(t *testing.T) {
	g, keys := newTestGroupWriter(t)
	release := make(chan struct{})
	firstDone := blockWriter(t, g, "0", release)
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- g.write(t.Context(), true, insert(string(rune('a'+i)))) }()
	}
	waitQueued(g, n)
	closed := make(chan struct{})
	go func() { g.close(); close(closed) }()
	close(release)
	<-closed
	// Everything queued before close committed.
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("queued write: %v", err)
		}
	}
	if got := len(keys()); got != n+1 {
		t.Errorf("table holds %d rows, want %d", got, n+1)
	}
	if err := g.write(t.Context(), true, insert("z")); !errors.Is(err, errClosed) {
		t.Errorf("write after close: %v, want errClosed", err)
	}
	g.close() // twice is fine
}
