package sds

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// Test identities.
const (
	idAPI = "sports.api"
	idWeb = "sports.web"
	// td is the trust domain of the namespaced SPIFFE form in tests.
	td = "athenz.test"
)

func spiffeOf(principal string) string { return "spiffe://" + td + "/ns/default/sa/" + principal }

// fakeAuth is an Authorizer driven by the test: tests run as one uid, so entitlement is
// simulated here rather than with real users.
type fakeAuth struct {
	mu    sync.Mutex
	grant Grant
	// failures is how many calls fail before the grant is returned.
	failures int
	calls    int
	peers    []PeerCred
}

func (f *fakeAuth) Authorize(_ context.Context, p PeerCred) (Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.peers = append(f.peers, p)
	if f.failures > 0 {
		f.failures--
		return Grant{}, errors.New("pod not found yet")
	}
	return f.grant, nil
}

func (f *fakeAuth) set(g Grant) {
	f.mu.Lock()
	f.grant = g
	f.mu.Unlock()
}

// testEnv is a real Server on a real Unix socket, fed by a cache the test drives.
type testEnv struct {
	t     testing.TB
	ca    *sdstest.CA
	cache *Cache
	auth  *fakeAuth
	srv   *Server
	path  string
	logs  *syncBuffer
}

type envOptions struct {
	cfg    Config
	grant  *Grant
	signer JWTSigner
	auth   Authorizer
}

// newEnv starts a server; it is stopped, and its goroutines checked for leaks, when the
// test ends.
func newEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	checkLeaks(t)
	ca, err := sdstest.NewCA("test root")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, ca: ca, cache: NewCache(), auth: &fakeAuth{grant: Grant{Identities: []string{idAPI}}}, logs: &syncBuffer{}}
	if o.grant != nil {
		e.auth.grant = *o.grant
	}
	var auth Authorizer = e.auth
	if o.auth != nil {
		auth = o.auth
	}
	cfg := o.cfg
	if cfg.SocketPath == "" {
		cfg.SocketPath = filepath.Join(t.TempDir(), "run", "agent.sock")
	}
	e.path = cfg.SocketPath
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, Deps{Cache: e.cache, Authorizer: auth, JWTSigner: o.signer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv.sds.retryMin, srv.sds.retryMax = 5*time.Millisecond, 20*time.Millisecond
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

// dial returns a client connection closed at the end of the test.
func (e *testEnv) dial() *grpc.ClientConn {
	e.t.Helper()
	conn, err := sdstest.Dial(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// issue puts a new certificate for principal in the cache and returns it.
func (e *testEnv) issue(principal string) *sdstest.Leaf {
	e.t.Helper()
	l, err := e.ca.Issue(principal, spiffeOf(principal), time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.cache.SetIdentity(principal, &Credential{Chain: l.Chain, Key: l.Key}); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// setBundle puts roots in the cache as the bundle.
func (e *testEnv) setBundle(roots ...*x509.Certificate) {
	e.t.Helper()
	if len(roots) == 0 {
		roots = []*x509.Certificate{e.ca.Cert}
	}
	if err := e.cache.SetBundle(&Bundle{Roots: roots, TrustDomains: []string{td}}); err != nil {
		e.t.Fatal(err)
	}
}

// decode unpacks one SDS resource and validates it against its proto constraints, as
// every secret the server builds must pass.
func decode(t testing.TB, a *anypb.Any) *tlsv3.Secret {
	t.Helper()
	s, err := sdstest.DecodeSecret(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ValidateAll(); err != nil {
		t.Fatalf("secret %s fails validation: %v", s.GetName(), err)
	}
	return s
}

// byName decodes the resources of a response by secret name.
func byName(t testing.TB, as []*anypb.Any) map[string]*tlsv3.Secret {
	t.Helper()
	m := make(map[string]*tlsv3.Secret, len(as))
	for _, a := range as {
		s := decode(t, a)
		if _, dup := m[s.GetName()]; dup {
			t.Fatalf("secret %s twice in one response", s.GetName())
		}
		m[s.GetName()] = s
	}
	return m
}

// leafSerial returns the serial of the first certificate in a tls_certificate secret,
// after checking that the key matches it.
func leafSerial(t testing.TB, s *tlsv3.Secret) string {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %s is not a tls_certificate: %v", s.GetName(), s)
	}
	chain := tc.GetCertificateChain().GetInlineBytes()
	blk, _ := pem.Decode(chain)
	if blk == nil {
		t.Fatalf("secret %s: no PEM in chain", s.GetName())
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(tc.GetPrivateKey().GetInlineBytes())
	if kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("secret %s: private key is not a PKCS#8 PEM block", s.GetName())
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
		t.Fatalf("secret %s: key does not match certificate", s.GetName())
	}
	return cert.SerialNumber.String()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkLeaks fails the test if goroutines started during it are still running when it
// ends (after every other cleanup, since cleanups run last-registered first). It waits a
// bounded time for them to finish: a gRPC server or stream shuts down asynchronously.
func checkLeaks(t testing.TB) {
	t.Helper()
	before := goroutineIDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := newGoroutines(before)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func goroutineID(stack string) string {
	var id int
	if _, err := fmt.Sscanf(stack, "goroutine %d ", &id); err != nil {
		return ""
	}
	return fmt.Sprint(id)
}

func goroutineIDs() map[string]bool {
	ids := make(map[string]bool)
	for _, s := range goroutineStacks() {
		ids[goroutineID(s)] = true
	}
	return ids
}

// newGoroutines lists goroutines not in before, ignoring the test framework's own and the
// runtime's.
func newGoroutines(before map[string]bool) []string {
	var out []string
	for _, s := range goroutineStacks() {
		if before[goroutineID(s)] || strings.Contains(s, "testing.tRunner") || strings.Contains(s, "testing.(*T).Run") {
			continue
		}
		out = append(out, s)
	}
	return out
}
