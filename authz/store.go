package authz

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Snapshot is one policy bundle in force, with what the server derived from it. It is
// immutable once published.
type Snapshot struct {
	// Evaluator decides from the bundle's data.
	Evaluator *policy.Evaluator
	// Revision is the bundle's revision.
	Revision string
	// Mapping is the request mapping in force: the config's when it sets one, else the
	// bundle's (nil meaning the default mapping).
	Mapping *policy.Mapping
	// Callers identifies callers, built for Mapping.
	Callers CallerSource
	// Signed and KeyID say whether the bundle's signature was checked and with which key.
	Signed bool
	KeyID  string
	// LoadedAt is when the bundle was put in force.
	LoadedAt time.Time
}

// StoreStatus is the store's health, for /healthz and logs.
type StoreStatus struct {
	// Ready is true once a bundle is in force.
	Ready    bool      `json:"ready"`
	Revision string    `json:"revision,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastSuccess is when the source was last read without error.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last failure (fetch, or a bundle refused), cleared by the next
	// successful load or check.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Failures counts failures since the start.
	Failures int `json:"failures"`
}

// prepareFunc completes a snapshot from a verified bundle (Mapping and Callers); prev is
// the snapshot in force, nil before the first. An error refuses the bundle.
type prepareFunc func(b *policy.Bundle, snap, prev *Snapshot) error

// Store loads the policy bundle from a file or URL, verifies and indexes it, and keeps the
// last good one in force. Current is safe to call from any goroutine and never blocks.
type Store struct {
	cfg     BundleConfig
	keys    map[string]crypto.PublicKey
	require bool
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics
	prepare prepareFunc
	onSwap  func(*Snapshot)

	cur       atomic.Pointer[Snapshot]
	ready     chan struct{}
	readyOnce sync.Once
	// lastSum is the digest of the last bundle bytes read, good or bad, and refused says
	// whether they were refused, so that an unchanged bad source stays reported. Both
	// belong to the Run goroutine.
	lastSum [sha256.Size]byte
	refused bool

	mu      sync.Mutex
	status  StoreStatus
	changed chan struct{}
}

// storeOptions are what the server gives newStore.
type storeOptions struct {
	cfg     BundleConfig
	keys    map[string]crypto.PublicKey
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics
	prepare prepareFunc
	onSwap  func(*Snapshot)
}

func newStore(o storeOptions) *Store {
	return &Store{
		cfg: o.cfg, keys: o.keys, require: o.cfg.requireSignature(), client: o.client,
		now: o.now, log: o.log, metrics: o.metrics, prepare: o.prepare, onSwap: o.onSwap,
		ready: make(chan struct{}), changed: make(chan struct{}),
	}
}

// Current returns the snapshot in force, nil before the first good bundle.
func (s *Store) Current() *Snapshot { return s.cur.Load() }

// Ready is closed once the first good bundle is in force.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Status returns the store's health.
func (s *Store) Status() StoreStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Changed returns a channel closed at the next status change (a bundle put in force, a
// check, a failure). Tests wait on it instead of sleeping.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// update changes the status under the lock and wakes Changed waiters.
func (s *Store) update(fn func(st *StoreStatus)) {
	s.mu.Lock()
	fn(&s.status)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Store) maxBytes() int64 {
	if s.cfg.MaxBytes > 0 {
		return s.cfg.MaxBytes
	}
	return policy.DefaultMaxBundleBytes
}

func (s *Store) pollInterval() time.Duration {
	if s.cfg.PollInterval > 0 {
		return s.cfg.PollInterval
	}
	return DefaultPollInterval
}

// Run loads the bundle and keeps it current until ctx is done. It returns nil when ctx
// ends; load failures are reported through Status and metrics, not returned.
func (s *Store) Run(ctx context.Context) error {
	if s.cfg.File != "" {
		return s.runFile(ctx)
	}
	return s.runURL(ctx)
}

// fileStamp identifies a file version without reading it.
type fileStamp struct {
	mod        time.Time
	size       int64
	dev, inode uint64
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.inode = uint64(sys.Dev), sys.Ino
	}
	return st, nil
}

func (s *Store) runFile(ctx context.Context) error {
	var last fileStamp
	seen := false
	for {
		st, err := statFile(s.cfg.File)
		switch {
		case err != nil:
			s.fail("read", fmt.Errorf("stat bundle %s: %w", s.cfg.File, err))
		case seen && st == last:
			s.checked()
		default:
			// Remember the stamp even when the load fails, so that a bad file is not
			// re-read every interval; it is read again once it changes.
			last, seen = st, true
			s.loadFile()
		}
		if !sleep(ctx, s.pollInterval()) {
			return nil
		}
	}
}

func (s *Store) loadFile() {
	f, err := os.Open(s.cfg.File)
	if err != nil {
		s.refused = true
		s.fail("read", fmt.Errorf("open bundle: %w", err))
		return
	}
	defer f.Close()
	data, err := readLimited(f, s.maxBytes())
	if err != nil {
		s.refused = true
		s.fail(failureReason(err), fmt.Errorf("read bundle %s: %w", s.cfg.File, err))
		return
	}
	s.load(data, s.cfg.File)
}

// readLimited reads r whole, refusing more than limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", policy.ErrBundleTooLarge, limit)
	}
	return data, nil
}

func (s *Store) runURL(ctx context.Context) error {
	interval := s.pollInterval()
	etag := ""
	failures := 0
	for {
		start := s.now()
		next, changed, err := s.fetch(ctx, etag)
		if ctx.Err() != nil {
			return nil
		}
		// Poll every interval. A long-poll that returned a change polls again at once:
		// the server paces the client by holding the next request.
		delay := interval - s.now().Sub(start)
		switch {
		case err != nil:
			failures++
			s.fail("fetch", err)
			delay = retryDelay(interval, failures)
		case changed && s.cfg.LongPollWait > 0:
			failures, etag, delay = 0, next, 0
		default:
			failures, etag = 0, next
		}
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// retryDelay backs off from interval, doubling per consecutive failure, up to
// DefaultMaxRetryDelay (or interval, when that is longer).
func retryDelay(interval time.Duration, failures int) time.Duration {
	limit := max(DefaultMaxRetryDelay, interval)
	d := interval
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// fetch polls the URL once with If-None-Match: etag and loads a changed bundle. It
// returns the ETag to send next time: the new bundle's, good or bad (a bad bundle is
// refused once, not refetched until it changes), or etag itself on a 304; and whether the
// server sent different bytes. A fetch error (network, status) is returned; a refused
// bundle is reported by load, not returned.
func (s *Store) fetch(ctx context.Context, etag string) (string, bool, error) {
	target := s.cfg.URL
	timeout := s.cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	if s.cfg.LongPollWait > 0 && etag != "" {
		u, err := url.Parse(target)
		if err != nil {
			return etag, false, err
		}
		q := u.Query()
		q.Set("wait", strconv.FormatInt(int64(s.cfg.LongPollWait.Round(time.Second)/time.Second), 10))
		u.RawQuery = q.Encode()
		target = u.String()
		timeout += s.cfg.LongPollWait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return etag, false, fmt.Errorf("fetch bundle: %w", err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	req.Header.Set("Accept", "application/gzip, application/octet-stream")
	resp, err := s.client.Do(req)
	if err != nil {
		return etag, false, fmt.Errorf("fetch bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		s.checked()
		return etag, false, nil
	case http.StatusOK:
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return etag, false, fmt.Errorf("fetch bundle %s: status %s", s.cfg.URL, resp.Status)
	}
	data, err := readLimited(resp.Body, s.maxBytes())
	if err != nil {
		if errors.Is(err, policy.ErrBundleTooLarge) {
			s.refused = true
			s.fail("too_large", fmt.Errorf("fetch bundle %s: %w", s.cfg.URL, err))
			return resp.Header.Get("ETag"), true, nil
		}
		return etag, false, fmt.Errorf("fetch bundle %s: %w", s.cfg.URL, err)
	}
	changed := s.load(data, s.cfg.URL)
	return resp.Header.Get("ETag"), changed, nil
}

// load verifies, indexes and puts data in force, or refuses it and keeps the current
// bundle. Identical bytes, or a bundle of the revision in force, are a no-op. It reports
// whether the bytes differed from the last ones read.
func (s *Store) load(data []byte, origin string) bool {
	sum := sha256.Sum256(data)
	if sum == s.lastSum {
		s.checked()
		return false
	}
	s.lastSum = sum
	s.refused = true
	b, err := s.read(data)
	if err != nil {
		s.fail(failureReason(err), fmt.Errorf("bundle from %s refused: %w", origin, err))
		return true
	}
	prev := s.cur.Load()
	if prev != nil && prev.Revision == b.Revision {
		s.refused = false
		s.checked()
		return true
	}
	ev, err := policy.NewEvaluator(b.Compiled)
	if err != nil {
		s.fail("invalid", fmt.Errorf("bundle from %s refused: %w", origin, err))
		return true
	}
	// The evaluator holds its own compact membership index; the decoded maps are most of
	// a large bundle's heap and the server never reads them again.
	b.Compiled.ReleaseMembers()
	now := s.now()
	snap := &Snapshot{Evaluator: ev, Revision: b.Revision, Signed: b.Signed && len(s.keys) > 0, KeyID: b.KeyID, LoadedAt: now}
	if s.prepare != nil {
		if err := s.prepare(b, snap, prev); err != nil {
			s.fail("prepare", fmt.Errorf("bundle from %s refused: %w", origin, err))
			return true
		}
	}
	s.refused = false
	s.cur.Store(snap)
	if s.onSwap != nil {
		s.onSwap(snap)
	}
	s.metrics.bundleLoaded(snap.Revision, now)
	prevRev := ""
	if prev != nil {
		prevRev = prev.Revision
	}
	s.log.Info("policy bundle in force", "revision", snap.Revision, "previous", prevRev, "signed", snap.Signed, "key_id", snap.KeyID,
		"domains", len(b.Compiled.Domains), "source", origin)
	s.update(func(st *StoreStatus) {
		st.Ready, st.Revision, st.LoadedAt, st.LastSuccess, st.LastError = true, snap.Revision, now, now, ""
	})
	s.readyOnce.Do(func() { close(s.ready) })
	// Reading a bundle leaves garbage several times the size of the index. Collect it
	// now, once, and return it to the OS: otherwise the heap goal stays inflated, and
	// every check's allocations land in fresh memory far from the cache.
	debug.FreeOSMemory()
	return true
}

// read parses and verifies a bundle. With keys, signed bundles are verified; an unsigned
// one is accepted only when signatures are not required.
func (s *Store) read(data []byte) (*policy.Bundle, error) {
	opts := policy.ReadOptions{VerificationKeys: s.keys, Scope: s.cfg.Scope, MaxBytes: s.maxBytes()}
	b, err := policy.ReadBundle(bytes.NewReader(data), opts)
	if errors.Is(err, policy.ErrBundleUnsigned) && !s.require {
		opts.VerificationKeys = nil
		return policy.ReadBundle(bytes.NewReader(data), opts)
	}
	return b, err
}

// failureReason is the metrics label for a load error.
func failureReason(err error) string {
	switch {
	case errors.Is(err, policy.ErrBundleTooLarge):
		return "too_large"
	case errors.Is(err, policy.ErrBundleUnsigned):
		return "unsigned"
	case errors.Is(err, policy.ErrBundleSignature):
		return "signature"
	case errors.Is(err, policy.ErrBundleInvalid):
		return "invalid"
	}
	return "read"
}

// checked records a successful read that changed nothing. The last error stays when the
// source still holds a refused bundle.
func (s *Store) checked() {
	now := s.now()
	s.metrics.bundleChecked(now)
	refused := s.refused
	s.update(func(st *StoreStatus) {
		st.LastSuccess = now
		if !refused {
			st.LastError = ""
		}
	})
}

// fail records a failure; the bundle in force stays. A message repeated from the last
// failure is logged at debug level, so a missing file does not flood the log.
func (s *Store) fail(reason string, err error) {
	now := s.now()
	s.metrics.bundleFailed(reason)
	msg := err.Error()
	s.mu.Lock()
	repeated := s.status.LastError == msg
	s.mu.Unlock()
	level := slog.LevelError
	if repeated {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "policy bundle not loaded; the bundle in force stays",
		"reason", reason, "error", msg, "revision_in_force", s.Status().Revision)
	s.update(func(st *StoreStatus) {
		st.LastError, st.LastErrorAt = msg, now
		st.Failures++
	})
}

// sleep waits d or until ctx is done, reporting whether it waited the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
