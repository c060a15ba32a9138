package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// testJoinProvider is the join-token provider of testdata/agent/domains.
const testJoinProvider = "athenz-mesh.test.join"

// fakeClock is a clock the test advances by hand, shared by the issuer and the agent so
// that certificates, renewals and expiry all follow it. Every After call is reported on
// armed, so a test can wait until the manager has gone back to sleep.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[chan time.Time]time.Time
	armed   chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now(), waiters: map[chan time.Time]time.Time{}, armed: make(chan time.Duration, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters[ch] = c.now.Add(d)
	}
	c.mu.Unlock()
	c.armed <- d
	return ch, func() {
		c.mu.Lock()
		delete(c.waiters, ch)
		c.mu.Unlock()
	}
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
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

// waitArmed waits until the manager sets its next timer and returns its duration. The
// deadline only bounds a broken test; nothing here sleeps.
func (c *fakeClock) waitArmed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(60 * time.Second):
		t.Fatal("the identity manager never went back to sleep")
		return 0
	}
}

// toggleProxy forwards TCP connections to target until broken: then it closes every
// open connection and refuses new ones, as an issuer outage looks to the agent.
type toggleProxy struct {
	ln     net.Listener
	target string
	broken atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func newToggleProxy(t *testing.T, target string) *toggleProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &toggleProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setBroken(true) })
	go p.serve()
	return p
}

func (p *toggleProxy) addr() string { return p.ln.Addr().String() }

func (p *toggleProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.broken.Load() {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *toggleProxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

func (p *toggleProxy) setBroken(b bool) {
	p.broken.Store(b)
	if !b {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// testIssuer is a real issuer serving testdata/agent/domains with a join-token
// provider, behind a toggleProxy.
type testIssuer struct {
	config string // issuer.yaml
	cfg    issuer.Config
	caFile string
	url    string // through the proxy
	proxy  *toggleProxy
}

// startTestIssuer starts an issuer on 127.0.0.1:0 with clock now (nil: the wall clock).
func startTestIssuer(t *testing.T, now func() time.Time) *testIssuer {
	t.Helper()
	dir := t.TempDir()
	domains, err := filepath.Abs("testdata/agent/domains")
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{config: filepath.Join(dir, "issuer.yaml")}
	body := "listen: {address: 127.0.0.1:0, metrics: \"off\"}\ndata_dir: " + filepath.Join(dir, "data") +
		"\nca: {create: true}\ndomains: {dir: " + domains + "}\nproviders:\n  - {name: " + testJoinProvider + ", attestor: join_token}\n"
	if err := os.WriteFile(ti.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if ti.cfg, err = issuer.LoadConfig(ti.config); err != nil {
		t.Fatal(err)
	}
	srv, err := issuer.New(ti.cfg, issuer.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer: %v", err)
		}
		srv.Close()
	})
	ti.caFile = filepath.Join(dir, "data", "ca", "ca.cert.pem")
	ti.proxy = newToggleProxy(t, ln.Addr().String())
	ti.url = "https://" + ti.proxy.addr() + issuer.BasePath
	return ti
}

// joinToken creates a join token for domain.service and writes it to a file.
func (ti *testIssuer) joinToken(t *testing.T, domain, service string, expires time.Time) string {
	t.Helper()
	st, err := issuer.OpenStore(context.Background(), ti.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secret, hash, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateJoinToken(context.Background(), store.JoinToken{IDHash: hash, Domain: domain, Service: service, ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentYAML writes an agent config for sports.api with a join token; extra is appended.
func (ti *testIssuer) agentYAML(t *testing.T, dir, tokenFile, extra string) string {
	t.Helper()
	body := "issuer: {url: " + ti.url + ", ca_file: " + ti.caFile + "}\n" +
		"sds: {socket: " + filepath.Join(dir, "agent.sock") + "}\n" +
		"identities:\n  - domain: sports\n    service: api\n    provider: " + testJoinProvider +
		"\n    instance_id: node-1\n    attestation: {kind: join_token, token_file: " + tokenFile + "}\n" +
		"    roles: [\"sports:role.readers\"]\n" +
		"files: {dir: " + filepath.Join(dir, "sia") + "}\n" +
		"metrics: {listen: 127.0.0.1:0}\n" + extra
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// shortTempDir is a temporary directory with a short path, since Unix socket paths are
// limited to about 100 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "am-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// noTempFiles fails when a directory holds a leftover temporary file of an atomic write.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary file %s", filepath.Join(dir, e.Name()))
		}
	}
}
