package sds

import (
	"slices"
	"sort"
	"sync"
)

// Watcher follows some cache entries and is signalled when one of them changes. A
// watcher follows identities by name (which covers their role certificates) and,
// optionally, the bundle; names need not be present in the cache yet, so a stream waiting
// for its first certificate is woken when it arrives.
//
// Signals coalesce: C has room for one, and the cache never blocks on it, so a slow
// reader can never delay a rotation for the others; when it reads, it re-reads the cache
// and gets the latest state, however many changes it slept through. A Watcher is used by
// one goroutine at a time; Close may be called from any.
type Watcher struct {
	c      *Cache
	ch     chan struct{}
	names  []string // followed identity names, sorted
	bundle bool
	closed bool
}

// watchers is the cache's index of watchers: who follows which name. Its mutex is
// separate from the data mutex so that readers of entries never wait behind a fan-out.
type watchers struct {
	mu     sync.Mutex
	byName map[string]map[*Watcher]struct{}
	bundle map[*Watcher]struct{}
	// demandCh is signalled when the set of followed names changes.
	demandCh chan struct{}
}

func (ws *watchers) init() {
	ws.byName = make(map[string]map[*Watcher]struct{})
	ws.bundle = make(map[*Watcher]struct{})
	ws.demandCh = make(chan struct{}, 1)
}

// Watch returns a new watcher that follows nothing until Follow is called. Close it when
// done.
func (c *Cache) Watch() *Watcher {
	return &Watcher{c: c, ch: make(chan struct{}, 1)}
}

// C returns the channel signalled after a followed entry changed.
func (w *Watcher) C() <-chan struct{} { return w.ch }

// Follow replaces the set of followed identities and whether the bundle is followed. It
// reports whether anything changed; a caller that read the cache before calling Follow
// must read it again when Follow returns true, since a change made between the read and
// Follow was not signalled to it.
func (w *Watcher) Follow(identities []string, bundle bool) bool {
	names := slices.Clone(identities)
	sort.Strings(names)
	names = slices.Compact(names)
	ws := &w.c.w
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w.closed || (bundle == w.bundle && slices.Equal(names, w.names)) {
		return false
	}
	demand := false
	for _, n := range w.names {
		if !slices.Contains(names, n) {
			demand = ws.unfollow(w, n) || demand
		}
	}
	for _, n := range names {
		if !slices.Contains(w.names, n) {
			set := ws.byName[n]
			if set == nil {
				set = make(map[*Watcher]struct{})
				ws.byName[n] = set
				demand = true
			}
			set[w] = struct{}{}
		}
	}
	if bundle {
		ws.bundle[w] = struct{}{}
	} else {
		delete(ws.bundle, w)
	}
	w.names, w.bundle = names, bundle
	if demand {
		signal(ws.demandCh)
	}
	return true
}

// Close stops the watcher; it is never signalled again. Close is idempotent.
func (w *Watcher) Close() {
	ws := &w.c.w
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	demand := false
	for _, n := range w.names {
		demand = ws.unfollow(w, n) || demand
	}
	delete(ws.bundle, w)
	w.names = nil
	if demand {
		signal(ws.demandCh)
	}
}

// unfollow removes w from name's set and reports whether nobody follows name any more.
// ws.mu must be held.
func (ws *watchers) unfollow(w *Watcher, name string) bool {
	set := ws.byName[name]
	delete(set, w)
	if len(set) == 0 {
		delete(ws.byName, name)
		return true
	}
	return false
}

func (ws *watchers) notifyIdentity(name string) {
	ws.mu.Lock()
	for w := range ws.byName[name] {
		signal(w.ch)
	}
	ws.mu.Unlock()
}

func (ws *watchers) notifyBundle() {
	ws.mu.Lock()
	for w := range ws.bundle {
		signal(w.ch)
	}
	ws.mu.Unlock()
}

// signal does a non-blocking send on a channel with room for one: if a signal is already
// pending the new one merges with it.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// DemandSource is how, in node mode, the identity manager learns which identities to
// obtain: those that connected workloads ask for (they are entitled to them, whether or
// not the cache has them yet). *Cache implements it. The manager reads Demand after each
// signal of DemandChanged (and once at start); the signal coalesces, so one read after
// many changes sees them all. An identity that leaves the demand may be removed from the
// cache (RemoveIdentity) once it is no longer wanted; keeping it a while avoids
// re-issuing for a workload that reconnects.
type DemandSource interface {
	// Demand returns the identity names followed by at least one stream, sorted.
	Demand() []string
	// DemandChanged is signalled when Demand's answer may have changed.
	DemandChanged() <-chan struct{}
}

var _ DemandSource = (*Cache)(nil)

// Demand returns the identity names at least one watcher follows, sorted: the identities
// connected workloads are asking for, present in the cache or not. In node mode the
// identity manager uses it to learn which identities to obtain; DemandChanged says when
// to look again.
func (c *Cache) Demand() []string {
	ws := &c.w
	ws.mu.Lock()
	names := make([]string, 0, len(ws.byName))
	for n := range ws.byName {
		names = append(names, n)
	}
	ws.mu.Unlock()
	sort.Strings(names)
	return names
}

// DemandChanged returns a channel signalled (coalesced, like Watcher.C) when the set
// returned by Demand changes. It is meant for a single consumer, the identity manager.
func (c *Cache) DemandChanged() <-chan struct{} { return c.w.demandCh }
