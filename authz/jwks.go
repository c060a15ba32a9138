package authz

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// JWKS defaults. ZTS rotates its token signing keys rarely and publishes a new key before
// signing with it, so an hourly refetch plus a refetch when a token names an unknown kid
// keeps up with rotation; a file is cheap to check and is looked at more often.
const (
	// DefaultJWKSRefreshInterval is how often a JWKS URL is refetched.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSFileInterval is how often a JWKS file is checked for changes.
	DefaultJWKSFileInterval = 5 * time.Second
	// DefaultJWKSMinRefetch is the shortest time between two fetches of a JWKS URL, however
	// many tokens name unknown key ids: it bounds what a client sending random kids can
	// make the issuer serve, and is also the retry delay after a failed fetch.
	DefaultJWKSMinRefetch = 30 * time.Second
	// DefaultJWKSFileMinRefetch is the same bound for a JWKS file.
	DefaultJWKSFileMinRefetch = time.Second
	// DefaultJWKSFetchTimeout bounds one fetch of a JWKS URL.
	DefaultJWKSFetchTimeout = 10 * time.Second
)

// errJWKSRateLimited is returned by refresh when the last attempt was too recent.
var errJWKSRateLimited = errors.New("jwks: refetch rate-limited")

// JWKSOptions says where a JWKS comes from and how often it is read again. Exactly one of
// File and URL must be set.
type JWKSOptions struct {
	// File is a JWKS document on disk, re-read when its identity, size or modification
	// time changes (an atomic rename or a Kubernetes ConfigMap update both count).
	File string
	// URL is an http(s) URL serving the JWKS, such as the issuer's
	// https://<zts>/zts/v1/oauth2/keys?rfc=true (both curve spellings are accepted, so
	// rfc=true is optional). Refetches send If-None-Match with the last ETag.
	URL string
	// Client fetches URL. Nil: a client with the default transport (system roots).
	Client *http.Client
	// RefreshInterval is how often the source is read again in the background. Zero:
	// DefaultJWKSRefreshInterval for a URL, DefaultJWKSFileInterval for a file.
	RefreshInterval time.Duration
	// MinRefetch is the shortest time between two reads triggered by unknown key ids or
	// failures. Zero: DefaultJWKSMinRefetch for a URL, DefaultJWKSFileMinRefetch for a
	// file. It is capped at RefreshInterval.
	MinRefetch time.Duration
	// Timeout bounds one fetch of URL. Zero: DefaultJWKSFetchTimeout.
	Timeout time.Duration
	// Now is the clock for refresh and rate-limit decisions. Nil: time.Now.
	Now func() time.Time
	// Logger receives key set changes and fetch failures (never key material). Nil:
	// discarded.
	Logger *slog.Logger
}

// JWKS is an access token key set read from a file or a URL and kept fresh: it is read
// again every RefreshInterval (lazily, on the next lookup, or by Run), and at once, subject
// to MinRefetch, when a token names a key id the set lacks, so that a rotated issuer key
// is picked up on its first use. A read that fails, or yields a document that does not
// parse or holds no usable key, leaves the last good set in force.
//
// A JWKS is an athenz.KeySet and is safe for concurrent use. Lookups of known key ids
// cost an atomic load and never block on the network.
type JWKS struct {
	file, url string
	client    *http.Client
	interval  time.Duration
	minGap    time.Duration
	timeout   time.Duration
	now       func() time.Time
	log       *slog.Logger
	// after is Run's timer; tests replace it.
	after func(time.Duration) <-chan time.Time

	set     atomic.Pointer[jwksSet]
	nextDue atomic.Int64 // unix nanoseconds after which a lookup starts a background read
	bgBusy  atomic.Bool  // a background read is running
	bg      sync.WaitGroup

	mu          sync.Mutex
	inflight    chan struct{} // closed when the running read ends; nil when none runs
	lastAttempt time.Time
	lastSuccess time.Time
	lastErr     error
	etag        string      // URL: ETag of the set in force
	fileInfo    os.FileInfo // file: what the set in force was read from
}

// jwksSet is one immutable key set.
type jwksSet struct {
	keys     athenz.StaticKeySet
	loadedAt time.Time
}

// JWKSStatus describes a JWKS for health and debugging.
type JWKSStatus struct {
	// Source is the file path or URL.
	Source string `json:"source"`
	// KeyIDs are the key ids in force, sorted.
	KeyIDs []string `json:"key_ids"`
	// LoadedAt is when the set in force was read.
	LoadedAt time.Time `json:"loaded_at"`
	// LastAttempt and LastSuccess are the last read and the last read that worked (a
	// new set or confirmation that nothing changed).
	LastAttempt time.Time `json:"last_attempt"`
	LastSuccess time.Time `json:"last_success"`
	// LastError is why the last read failed, "" when it worked.
	LastError string `json:"last_error,omitempty"`
}

// NewJWKS reads the key set once and returns it; it fails when that first read fails, so
// that a wrong path or URL stops the start rather than every token.
func NewJWKS(ctx context.Context, opts JWKSOptions) (*JWKS, error) {
	j := &JWKS{
		file: opts.File, url: opts.URL, client: opts.Client,
		interval: opts.RefreshInterval, minGap: opts.MinRefetch, timeout: opts.Timeout,
		now: opts.Now, log: opts.Logger, after: time.After,
	}
	switch {
	case j.file == "" && j.url == "":
		return nil, errors.New("jwks: set a file or a url")
	case j.file != "" && j.url != "":
		return nil, errors.New("jwks: set a file or a url, not both")
	case j.url != "":
		u, err := url.Parse(j.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("jwks: %q is not an http(s) URL", j.url)
		}
		j.interval = cmpOr(j.interval, DefaultJWKSRefreshInterval)
		j.minGap = cmpOr(j.minGap, DefaultJWKSMinRefetch)
	default:
		j.interval = cmpOr(j.interval, DefaultJWKSFileInterval)
		j.minGap = cmpOr(j.minGap, DefaultJWKSFileMinRefetch)
	}
	if j.interval < 0 || j.minGap < 0 || j.timeout < 0 {
		return nil, errors.New("jwks: intervals and timeout must not be negative")
	}
	j.minGap = min(j.minGap, j.interval)
	j.timeout = cmpOr(j.timeout, DefaultJWKSFetchTimeout)
	if j.client == nil {
		j.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if j.now == nil {
		j.now = time.Now
	}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	if err := j.refresh(ctx, false); err != nil {
		return nil, err
	}
	return j, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// source names where the keys come from, for logs and errors.
func (j *JWKS) source() string {
	if j.file != "" {
		return j.file
	}
	return j.url
}

// Key returns the key with id kid, reading the source again first (subject to
// MinRefetch) when kid is unknown. It implements athenz.KeySet; KeyContext bounds the
// wait by a request's context.
func (j *JWKS) Key(kid string) (crypto.PublicKey, bool) {
	return j.KeyContext(context.Background(), kid)
}

// KeyContext is Key with a context bounding the wait for a read of the source.
func (j *JWKS) KeyContext(ctx context.Context, kid string) (crypto.PublicKey, bool) {
	j.refreshIfDue()
	if k, ok := j.set.Load().keys[kid]; ok {
		return k, true
	}
	// An unknown kid may be a key the issuer has just started to use. Whatever the
	// read's outcome, the set in force (possibly updated by another request) decides.
	_ = j.refresh(ctx, true)
	k, ok := j.set.Load().keys[kid]
	return k, ok
}

// refreshIfDue starts a background read when the set is due for one. At most one
// background read runs at a time; it is bounded by the fetch timeout.
func (j *JWKS) refreshIfDue() {
	if j.now().UnixNano() < j.nextDue.Load() || !j.bgBusy.CompareAndSwap(false, true) {
		return
	}
	j.bg.Add(1)
	go func() {
		defer j.bg.Done()
		defer j.bgBusy.Store(false)
		_ = j.refresh(context.Background(), true)
	}()
}

// Refresh reads the source now, unless another read is running, in which case it waits
// for that one. The last good set stays in force when the read fails.
func (j *JWKS) Refresh(ctx context.Context) error {
	return j.refresh(ctx, false)
}

// refresh reads the source once; with limited, not within minGap of the last attempt.
// Concurrent callers share one read.
func (j *JWKS) refresh(ctx context.Context, limited bool) error {
	j.mu.Lock()
	if ch := j.inflight; ch != nil {
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.lastErr
	}
	now := j.now()
	if limited && !j.lastAttempt.IsZero() && now.Sub(j.lastAttempt) < j.minGap {
		j.mu.Unlock()
		return errJWKSRateLimited
	}
	ch := make(chan struct{})
	j.inflight, j.lastAttempt = ch, now
	etag, fi := j.etag, j.fileInfo
	j.mu.Unlock()

	var r jwksRead
	var err error
	if j.file != "" {
		r, err = j.readFile(fi)
	} else {
		r, err = j.fetchURL(ctx, etag)
	}

	j.mu.Lock()
	j.lastErr = err
	if err == nil {
		j.lastSuccess = now
		if r.keys != nil {
			j.etag, j.fileInfo = r.etag, r.fileInfo
			j.set.Store(&jwksSet{keys: r.keys, loadedAt: now})
		}
		j.nextDue.Store(now.Add(j.interval).UnixNano())
	} else {
		j.nextDue.Store(now.Add(j.minGap).UnixNano())
	}
	j.inflight = nil
	close(ch)
	j.mu.Unlock()

	switch {
	case err != nil:
		j.log.Warn("jwks read failed; keeping the last good key set", "source", j.source(), "error", err)
	case r.keys != nil:
		j.log.Info("jwks loaded", "source", j.source(), "key_ids", sortedKeys(r.keys))
	}
	return err
}

// jwksRead is the result of one read: keys is nil when the source is unchanged.
type jwksRead struct {
	keys     athenz.StaticKeySet
	etag     string
	fileInfo os.FileInfo
}

// readFile reads the file unless it is the one the set in force came from.
func (j *JWKS) readFile(prev os.FileInfo) (jwksRead, error) {
	f, err := os.Open(j.file)
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks file: %w", err)
	}
	if prev != nil && os.SameFile(prev, fi) && fi.Size() == prev.Size() && fi.ModTime().Equal(prev.ModTime()) {
		return jwksRead{}, nil
	}
	keys, err := readJWKS(f)
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks file %s: %w", j.file, err)
	}
	return jwksRead{keys: keys, fileInfo: fi}, nil
}

// fetchURL fetches the URL, conditionally on etag.
func (j *JWKS) fetchURL(ctx context.Context, etag string) (jwksRead, error) {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks url: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks url: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		return jwksRead{}, nil
	case resp.StatusCode != http.StatusOK:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return jwksRead{}, fmt.Errorf("jwks url %s: status %d", j.url, resp.StatusCode)
	}
	keys, err := readJWKS(resp.Body)
	if err != nil {
		return jwksRead{}, fmt.Errorf("jwks url %s: %w", j.url, err)
	}
	return jwksRead{keys: keys, etag: resp.Header.Get("ETag")}, nil
}

// readJWKS reads and parses one JWKS document of at most athenz.MaxJWKSLength bytes. A
// set without a single usable key is refused: publishing it would turn every token away,
// which is never what a key rotation means.
func readJWKS(r io.Reader) (athenz.StaticKeySet, error) {
	b, err := io.ReadAll(io.LimitReader(r, athenz.MaxJWKSLength+1))
	if err != nil {
		return nil, err
	}
	if len(b) > athenz.MaxJWKSLength {
		return nil, fmt.Errorf("more than %d bytes", athenz.MaxJWKSLength)
	}
	keys, err := athenz.ParseJWKS(b)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable RSA or EC signing key")
	}
	return keys, nil
}

// Run reads the source again every RefreshInterval (and after MinRefetch when a read
// failed) until ctx is done, so that the set stays fresh without lookups driving it. It
// is optional: lookups start the same reads when they find the set due. It returns nil.
func (j *JWKS) Run(ctx context.Context) error {
	for {
		wait := time.Duration(j.nextDue.Load() - j.now().UnixNano())
		// A floor keeps a read that was rate-limited from spinning the loop.
		wait = max(wait, 100*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil
		case <-j.after(wait):
		}
		_ = j.refresh(ctx, true)
	}
}

// Status reports the set in force and the last read.
func (j *JWKS) Status() JWKSStatus {
	set := j.set.Load()
	j.mu.Lock()
	defer j.mu.Unlock()
	st := JWKSStatus{
		Source:      j.source(),
		KeyIDs:      sortedKeys(set.keys),
		LoadedAt:    set.loadedAt,
		LastAttempt: j.lastAttempt,
		LastSuccess: j.lastSuccess,
	}
	if j.lastErr != nil {
		st.LastError = j.lastErr.Error()
	}
	return st
}
