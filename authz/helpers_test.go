package authz

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// t0 is the fake clock's start; the expiring member's membership ends an hour later.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// world returns the test domains. extraReader, when set, is added to sports:role.readers,
// so that two worlds differ in revision and in one decision.
//
//	sports:role.readers  sports.api, sports.expiring (until t0+1h), extraReader
//	sports:role.writers  sports.admin
//	sports:policy.read   ALLOW readers get sports:/public/*; DENY readers get sports:/public/secret
//	sports:policy.write  ALLOW writers post sports:/admin/*, ALLOW writers get sports:/public/*
//	media:role.viewers   sports.api
//	media:policy.view    ALLOW viewers get media:/*
func world(extraReader string) []*policy.Domain {
	exp := athenz.NewTimestamp(t0.Add(time.Hour))
	readers := []*policy.RoleMember{{MemberName: "sports.api"}, {MemberName: "sports.expiring", Expiration: &exp}}
	if extraReader != "" {
		readers = append(readers, &policy.RoleMember{MemberName: extraReader})
	}
	return []*policy.Domain{
		{
			Name: "sports",
			Roles: []*policy.Role{
				{Name: "sports:role.readers", RoleMembers: readers},
				{Name: "sports:role.writers", RoleMembers: []*policy.RoleMember{{MemberName: "sports.admin"}}},
			},
			Policies: &policy.SignedPolicies{Contents: &policy.DomainPolicies{Domain: "sports", Policies: []*policy.Policy{
				{Name: "sports:policy.read", Assertions: []*policy.Assertion{
					{Role: "sports:role.readers", Action: "get", Resource: "sports:/public/*", Effect: policy.Allow},
					{Role: "sports:role.readers", Action: "get", Resource: "sports:/public/secret", Effect: policy.Deny},
				}},
				{Name: "sports:policy.write", Assertions: []*policy.Assertion{
					{Role: "sports:role.writers", Action: "post", Resource: "sports:/admin/*", Effect: policy.Allow},
					{Role: "sports:role.writers", Action: "get", Resource: "sports:/public/*", Effect: policy.Allow},
				}},
			}}},
		},
		{
			Name:  "media",
			Roles: []*policy.Role{{Name: "media:role.viewers", RoleMembers: []*policy.RoleMember{{MemberName: "sports.api"}}}},
			Policies: &policy.SignedPolicies{Contents: &policy.DomainPolicies{Domain: "media", Policies: []*policy.Policy{
				{Name: "media:policy.view", Assertions: []*policy.Assertion{
					{Role: "media:role.viewers", Action: "get", Resource: "media:/*", Effect: policy.Allow},
				}},
			}}},
		},
	}
}

// bundleMapping is the mapping compiled into the test bundles: a host table, no default.
var bundleMapping = &policy.Mapping{Hosts: map[string]string{"media.example.com": "media"}}

// signer is a bundle signing key and its public key file.
type signer struct {
	key     crypto.Signer
	keyID   string
	pubFile string
}

func newSigner(t testing.TB, dir, keyID string) *signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, keyID+".pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &signer{key: key, keyID: keyID, pubFile: pubFile}
}

// bundle compiles domains with the test mapping and writes a bundle signed by s (unsigned
// when s is nil). It returns the bytes and the revision.
func bundle(t testing.TB, s *signer, domains []*policy.Domain) ([]byte, string) {
	t.Helper()
	c, err := policy.Compile(domains, policy.CompileOptions{Mapping: bundleMapping})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	opts := policy.BundleOptions{}
	if s != nil {
		opts.SigningKey, opts.KeyID = s.key, s.keyID
	}
	if err := policy.WriteBundle(&buf, c, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), c.Revision
}

// writeFileAtomic replaces path with data by rename, as a config-management tool would.
func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// shortTempDir returns a temporary directory with a short path: Unix socket paths are
// limited to about 100 bytes, and t.TempDir's include the test name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "az")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// testServer is a running Server with clients on each of its gRPC listeners.
type testServer struct {
	*Server
	reg    *prometheus.Registry
	socket string
	tcp    authv3.AuthorizationClient
	unix   authv3.AuthorizationClient
	conns  []*grpc.ClientConn
}

// startServer starts a server for cfg with test listeners (gRPC on 127.0.0.1:0 and a
// Unix socket, metrics on 127.0.0.1:0) and stops it when the test ends.
func startServer(t testing.TB, cfg Config, deps Deps) *testServer {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "authz.sock")
	cfg.Listen.GRPC = "127.0.0.1:0"
	cfg.Listen.GRPCSocket = sock
	if cfg.Listen.Metrics == "" {
		cfg.Listen.Metrics = "127.0.0.1:0"
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ts := &testServer{Server: s, reg: deps.Registry, socket: sock}
	t.Cleanup(func() {
		for _, c := range ts.conns {
			c.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	ts.tcp = ts.dial(t, s.GRPCAddr().String())
	ts.unix = ts.dial(t, "unix://"+sock)
	return ts
}

func (ts *testServer) dial(t testing.TB, target string) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ts.conns = append(ts.conns, conn)
	return authv3.NewAuthorizationClient(conn)
}

// waitReady waits for the first bundle.
func (ts *testServer) waitReady(t testing.TB) {
	t.Helper()
	select {
	case <-ts.Store().Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("server not ready: %+v", ts.Store().Status())
	}
}

// waitStatus waits until cond holds for the store's status.
func (ts *testServer) waitStatus(t testing.TB, what string, cond func(StoreStatus) bool) StoreStatus {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := ts.Store().Changed()
		if st := ts.Store().Status(); cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; status %+v", what, ts.Store().Status())
		}
	}
}

// check sends req over TCP.
func (ts *testServer) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := ts.tcp.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// peer is a workload certificate, as Envoy describes it in CheckRequest attributes.
type peer struct {
	principal string // URI SAN
	certURL   string // URL-encoded PEM
}

// newPeer makes a self-signed certificate with CN cn and URI SAN uri.
func newPeer(t testing.TB, cn, uri string) peer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return peer{principal: uri, certURL: envoyURLEncode(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))}
}

// envoyURLEncode encodes a PEM certificate as Envoy does for
// attributes.source.certificate and XFCC's Cert.
func envoyURLEncode(s string) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

// envoyReq builds a CheckRequest as Envoy's HTTP ext_authz filter sends it.
type envoyReq struct {
	method, path, host string
	peer               *peer
	headers            map[string]string
	ext                map[string]string
}

func (e envoyReq) build() *authv3.CheckRequest {
	method, host := e.method, e.host
	if method == "" {
		method = "GET"
	}
	if host == "" {
		host = "sports.example.com"
	}
	headers := map[string]string{":method": method, ":path": e.path, ":authority": host, "user-agent": "test", "x-request-id": "r1"}
	for k, v := range e.headers {
		headers[k] = v
	}
	attrs := &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Path: e.path, Host: host, Scheme: "https", Protocol: "HTTP/2", Headers: headers,
		}},
		ContextExtensions: e.ext,
		Source:            &authv3.AttributeContext_Peer{},
	}
	if e.peer != nil {
		attrs.Source.Principal = e.peer.principal
		attrs.Source.Certificate = e.peer.certURL
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// metricValue returns the value of the series of name whose labels include want: a
// counter's or gauge's value, a histogram's sample count. Missing: 0.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// tokenCallers wraps the real caller source: a request with "x-test-token:
// <domain>:<role>,<role>" is a token caller (standing in for a verified access token),
// anything else goes to the Authenticator.
type tokenCallers struct{ next CallerSource }

func newTokenCallers(cfg CredentialsConfig, m *policy.Mapping) (CallerSource, error) {
	a, err := NewAuthenticator(cfg, m)
	if err != nil {
		return nil, err
	}
	return tokenCallers{next: a}, nil
}

func (c tokenCallers) Authenticate(ctx context.Context, in *Input) (Caller, error) {
	if tok, ok := in.Headers["x-test-token"]; ok {
		dom, roles, _ := strings.Cut(tok, ":")
		if dom == "bad" {
			return Caller{}, &CredentialError{Reason: "token_expired"}
		}
		return Caller{Principal: in.Headers["x-test-sub"], TokenDomain: dom, Roles: strings.Split(roles, ","), Source: SourceAccessToken}, nil
	}
	return c.next.Authenticate(ctx, in)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func removeFile(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
