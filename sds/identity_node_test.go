package sds

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// stepClock is a manual clock for the node-mode loop: After calls are reported on armed.
type stepClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[chan time.Time]time.Time
	armed   chan struct{}
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *stepClock) After(d time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters[ch] = c.now.Add(d)
	}
	c.mu.Unlock()
	c.armed <- struct{}{}
	return ch, func() { c.mu.Lock(); delete(c.waiters, ch); c.mu.Unlock() }
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for ch, at := range c.waiters {
		if !c.now.Before(at) {
			ch <- c.now
			delete(c.waiters, ch)
		}
	}
}

// TestNodeModeFollowsDemand checks that node mode starts keeping an identity when a
// workload asks for it and drops it NodeIdleGrace after the last one stopped. The pods
// have no token, so the issuer is never reached.
func TestNodeModeFollowsDemand(t *testing.T) {
	cache := NewCache()
	clock := &stepClock{now: time.Unix(1e9, 0), waiters: map[chan time.Time]time.Time{}, armed: make(chan struct{}, 1024)}
	node := &NodeIdentities{Demand: cache, Template: IdentitySpec{Provider: "athenz-mesh.k8s"}, TokenPath: t.TempDir() + "/" + PodUIDPlaceholder}
	sink := &removalSink{Cache: cache, removed: make(chan string, 16)}
	m, err := NewManager(ManagerConfig{NodeIdleGrace: time.Minute}, ManagerDeps{Issuer: unusedIssuer{}, Sink: sink, Node: node, Clock: clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func() {
		select {
		case <-clock.armed:
		case <-time.After(30 * time.Second):
			t.Fatal("the manager never went back to sleep")
		}
	}

	w := cache.Watch()
	w.Follow([]string{"sports.api"}, false)
	// Wait until the identity is started and its first attempt failed (no pod token).
	for {
		wait()
		if st := m.Status(); len(st) == 1 && st[0].Failures > 0 {
			break
		}
	}
	if got := m.Identities(); !slices.Equal(got, []string{"sports.api"}) {
		t.Fatalf("identities %v", got)
	}
	w.Close()
	// Advance until the idle identity is dropped: every advance that does not drop it
	// makes the manager arm another timer (a retry, or the idle deadline).
	for i := 0; ; i++ {
		clock.advance(2 * time.Minute)
		select {
		case name := <-sink.removed:
			if name != "sports.api" || len(m.Identities()) != 0 {
				t.Errorf("removed %s, identities left %v", name, m.Identities())
			}
			return
		case <-clock.armed:
		case <-time.After(30 * time.Second):
			t.Fatal("the idle identity was never dropped")
		}
		if i > 100 {
			t.Fatal("the idle identity was never dropped")
		}
	}
}

// removalSink reports RemoveIdentity calls.
type removalSink struct {
	*Cache
	removed chan string
}

func (s *removalSink) RemoveIdentity(name string) {
	s.Cache.RemoveIdentity(name)
	s.removed <- name
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
