package authz

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// bundleServer serves one bundle with an ETag, answers If-None-Match with 304, and holds
// a request that carries ?wait=N until the bundle changes or N seconds pass.
type bundleServer struct {
	mu       sync.Mutex
	data     []byte
	etag     string
	status   int           // non-zero: answer every request with it
	changed  chan struct{} // closed when data changes
	sent304  chan struct{} // closed at the next 304
	arrived  chan struct{} // closed at the next request
	requests []*http.Request
}

func newBundleServer(t *testing.T, data []byte) (*bundleServer, *httptest.Server) {
	b := &bundleServer{changed: make(chan struct{}), sent304: make(chan struct{}), arrived: make(chan struct{})}
	b.set(data)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return b, srv
}

func (b *bundleServer) set(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data = data
	b.etag = fmt.Sprintf(`"%x"`, sha256.Sum256(data))
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *bundleServer) setStatus(code int) {
	b.mu.Lock()
	b.status = code
	b.mu.Unlock()
}

// next304 returns a channel closed when the server next answers 304.
func (b *bundleServer) next304() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent304
}

// waitRequests waits until the server has received n requests and returns them.
func (b *bundleServer) waitRequests(t *testing.T, n int) []*http.Request {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		reqs, arrived := b.requests, b.arrived
		b.mu.Unlock()
		if len(reqs) >= n {
			return reqs
		}
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("timed out waiting for request %d", n)
		}
	}
}

func (b *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.requests = append(b.requests, r)
	close(b.arrived)
	b.arrived = make(chan struct{})
	if b.status != 0 {
		b.mu.Unlock()
		w.WriteHeader(b.status)
		return
	}
	inm := r.Header.Get("If-None-Match")
	if wait := r.URL.Query().Get("wait"); wait != "" && inm == b.etag {
		var secs int
		fmt.Sscan(wait, &secs)
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
		}
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	if inm == b.etag {
		close(b.sent304)
		b.sent304 = make(chan struct{})
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", b.etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(b.data)
}

func TestBundleURLHotSwapAndRefusal(t *testing.T) {
	dir := t.TempDir()
	k1 := newSigner(t, dir, "k1")
	dataA, revA := bundle(t, k1, world(""))
	dataB, revB := bundle(t, k1, world("sports.newbie"))
	bs, srv := newBundleServer(t, dataA)

	cfg := Config{Bundle: BundleConfig{URL: srv.URL + "/bundle.tar.gz", PollInterval: 10 * time.Millisecond,
		VerificationKeys: []VerificationKey{{KeyID: "k1", File: k1.pubFile}}}}
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	if got := ts.Store().Current().Revision; got != revA {
		t.Fatalf("revision %s, want %s", got, revA)
	}
	newbie := newPeer(t, "sports.newbie", "spiffe://sports/sa/newbie")
	req := envoyReq{path: "/public/x", peer: &newbie, ext: map[string]string{"athenz.domain": "sports"}}.build()
	if a := flatten(t, ts.check(t, req)); a.allowed || a.meta["reason"] != "not_member" {
		t.Fatalf("before the swap: %+v", a)
	}
	// The poller revalidates with If-None-Match and gets 304s.
	select {
	case <-bs.next304():
	case <-time.After(20 * time.Second):
		t.Fatal("no 304 served: the client does not send If-None-Match")
	}

	bs.set(dataB)
	ts.waitStatus(t, "revision B", func(st StoreStatus) bool { return st.Revision == revB })
	if a := flatten(t, ts.check(t, req)); !a.allowed {
		t.Fatalf("after the swap: %+v", a)
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_bundle_info", map[string]string{"revision": revB}); v != 1 {
		t.Errorf("bundle_info{revision=B} = %v, want 1", v)
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_bundle_info", map[string]string{"revision": revA}); v != 0 {
		t.Errorf("bundle_info{revision=A} = %v, want 0 (only the revision in force)", v)
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_bundle_loads_total", nil); v != 2 {
		t.Errorf("bundle_loads_total = %v, want 2", v)
	}

	refusals := []struct {
		name, reason string
		data         []byte
	}{
		{"signed by another key under the same id", "signature", func() []byte {
			d, _ := bundle(t, newSigner(t, dir, "k1"), world("sports.intruder"))
			return d
		}()},
		{"unsigned", "unsigned", func() []byte { d, _ := bundle(t, nil, world("sports.intruder")); return d }()},
		{"not a bundle", "invalid", []byte("\x1f\x8bgarbage")},
	}
	for _, r := range refusals {
		bs.set(r.data)
		st := ts.waitStatus(t, "refusal of "+r.name, func(st StoreStatus) bool {
			return metricValue(t, ts.reg, "athenz_mesh_authz_bundle_load_failures_total", map[string]string{"reason": r.reason}) == 1
		})
		if st.Revision != revB || st.LastError == "" {
			t.Errorf("%s: status %+v, want revision B kept and the error shown", r.name, st)
		}
		if a := flatten(t, ts.check(t, req)); !a.allowed {
			t.Errorf("%s: the last good bundle no longer decides: %+v", r.name, a)
		}
	}
	// A refused bundle is fetched once: later polls send its ETag and get 304s, and the
	// error stays visible in health.
	select {
	case <-bs.next304():
	case <-time.After(20 * time.Second):
		t.Fatal("the refused bundle is not revalidated with its ETag")
	}
	var health Health
	getJSON(t, "http://"+ts.MetricsAddr().String()+"/healthz", http.StatusOK, &health)
	if health.Bundle.LastError == "" || health.Bundle.Revision != revB || !health.Ready {
		t.Errorf("/healthz = %+v, want ready on B with the refusal shown", health)
	}
	getJSON(t, "http://"+ts.MetricsAddr().String()+"/readyz", http.StatusOK, &health)
}

func getJSON(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		t.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, wantStatus)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
}

// TestBundleLongPoll polls once a minute but long-polls: a change must arrive through the
// held request, long before the next poll.
func TestBundleLongPoll(t *testing.T) {
	dir := t.TempDir()
	k1 := newSigner(t, dir, "k1")
	dataA, _ := bundle(t, k1, world(""))
	dataB, revB := bundle(t, k1, world("sports.newbie"))
	bs, srv := newBundleServer(t, dataA)
	cfg := Config{Bundle: BundleConfig{URL: srv.URL, PollInterval: time.Minute, LongPollWait: 30 * time.Second,
		VerificationKeys: []VerificationKey{{KeyID: "k1", File: k1.pubFile}}}}
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	// Wait for the held request before changing the bundle.
	reqs := bs.waitRequests(t, 2)
	if wait := reqs[1].URL.Query().Get("wait"); wait != "30" {
		t.Errorf("wait=%q, want 30", wait)
	}
	bs.set(dataB)
	ts.waitStatus(t, "revision B", func(st StoreStatus) bool { return st.Revision == revB })
}

func TestBundleFileWatch(t *testing.T) {
	cfg, k1, path := fileServerConfig(t)
	cfg.Bundle.PollInterval = 5 * time.Millisecond
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)

	dataB, revB := bundle(t, k1, world("sports.newbie"))
	writeFileAtomic(t, path, dataB)
	ts.waitStatus(t, "revision B", func(st StoreStatus) bool { return st.Revision == revB })

	// A torn write in place is refused and B stays.
	if err := os.WriteFile(path, dataB[:len(dataB)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	st := ts.waitStatus(t, "the torn file refused", func(st StoreStatus) bool { return st.LastError != "" })
	if st.Revision != revB {
		t.Errorf("revision %s after a bad file, want B kept", st.Revision)
	}
	dataC, revC := bundle(t, k1, world("sports.third"))
	writeFileAtomic(t, path, dataC)
	st = ts.waitStatus(t, "revision C", func(st StoreStatus) bool { return st.Revision == revC })
	if st.LastError != "" {
		t.Errorf("error %q still shown after a good bundle", st.LastError)
	}
}

func TestNoBundleIsNotADeny(t *testing.T) {
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	req := envoyReq{path: "/public/x", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()
	cases := []struct {
		name    string
		mutate  func(*DecisionConfig)
		allowed bool
		status  int
		errResp bool
	}{
		{name: "fail closed", status: 503},
		{name: "custom status", mutate: func(d *DecisionConfig) { d.StatusOnError = 500 }, status: 500},
		{name: "envoy error_response", mutate: func(d *DecisionConfig) { d.EnvoyErrorResponse = true }, status: 503, errResp: true},
		{name: "fail open", mutate: func(d *DecisionConfig) { d.FailureMode = FailOpen }, allowed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs, srv := newBundleServer(t, nil)
			bs.setStatus(http.StatusInternalServerError)
			cfg := Config{Bundle: BundleConfig{URL: srv.URL, PollInterval: time.Hour}}
			if tc.mutate != nil {
				tc.mutate(&cfg.Decision)
			}
			ts := startServer(t, cfg, Deps{})
			ts.waitStatus(t, "the failed fetch", func(st StoreStatus) bool { return st.Failures > 0 })
			a := flatten(t, ts.check(t, req))
			if a.allowed != tc.allowed || (!tc.allowed && (a.status != tc.status || a.errorResponse != tc.errResp)) {
				t.Fatalf("answer %+v", a)
			}
			if tc.allowed {
				if a.headers["x-athenz-decision"] != "error" || !contains(a.remove, "x-athenz-principal") {
					t.Errorf("fail-open headers %v remove %v", a.headers, a.remove)
				}
			} else {
				if a.code != codes.Unavailable || a.headers["x-athenz-decision"] != "error" || !strings.Contains(a.body, `"no_bundle"`) {
					t.Errorf("fail-closed answer %+v", a)
				}
			}
			if v := metricValue(t, ts.reg, "athenz_mesh_authz_decisions_total", map[string]string{"result": "error", "reason": "no_bundle"}); v != 1 {
				t.Errorf("decisions_total{error,no_bundle} = %v, want 1", v)
			}
			if v := metricValue(t, ts.reg, "athenz_mesh_authz_decisions_total", map[string]string{"result": "deny"}); v != 0 {
				t.Errorf("an error was counted as a deny")
			}
			var health Health
			getJSON(t, "http://"+ts.MetricsAddr().String()+"/readyz", http.StatusServiceUnavailable, &health)
			if health.Ready || !strings.Contains(health.Bundle.LastError, "500") {
				t.Errorf("/readyz = %+v", health)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Second, 50, DefaultMaxRetryDelay},
		{time.Minute, 3, time.Minute},
	} {
		if got := retryDelay(tc.interval, tc.failures); got != tc.want {
			t.Errorf("retryDelay(%s, %d) = %s, want %s", tc.interval, tc.failures, got, tc.want)
		}
	}
}

func TestSocketFile(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "s.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(sock, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listening over a regular file: %v", err)
	}
	os.Remove(sock)
	l, err := listenUnix(sock, "0600")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	// A stale socket (left by a crash, which does not unlink it) is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	l, err = listenUnix(sock, "")
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	l.Close()
}
