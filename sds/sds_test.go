package sds

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// streamCtx bounds a test's streams so that a missing response fails instead of hanging.
func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, ctx context.Context, e *testEnv) *sdstest.Client {
	t.Helper()
	c, err := sdstest.NewClient(ctx, e.dial())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func recv(t *testing.T, c *sdstest.Client) *discoveryv3.DiscoveryResponse {
	t.Helper()
	r, err := c.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if r.GetVersionInfo() == "" || r.GetNonce() == "" || r.GetTypeUrl() != SecretTypeURL {
		t.Fatalf("response without version, nonce or type: %v", r)
	}
	return r
}

func names(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for n := range byName(t, r.GetResources()) {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// waitDemand waits until some stream follows identity id, proving the server processed
// its subscription.
func waitDemand(t *testing.T, c *Cache, id string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !slices.Contains(c.Demand(), id) {
		select {
		case <-c.DemandChanged():
		case <-timeout:
			t.Fatalf("no stream follows %s", id)
		}
	}
}

// eventually waits, bounded, for cond: for effects that have no channel to wait on, such
// as a log line.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rootsPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func TestStreamFirstResponseWaitsForCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	waitDemand(t, e.cache, idAPI)
	// The bundle is not what this stream asked for: no (empty) response for it.
	e.setBundle()
	leaf := e.issue(idAPI)
	r := recv(t, c)
	got := byName(t, r.GetResources())
	if len(got) != 1 || got[NameDefault] == nil {
		t.Fatalf("first response = %v, want default only", names(t, r))
	}
	if s := leafSerial(t, got[NameDefault]); s != leaf.Cert.SerialNumber.String() {
		t.Fatalf("serial %s, want %s", s, leaf.Cert.SerialNumber)
	}
	if err := c.Ack(r); err != nil {
		t.Fatal(err)
	}
	// Adding ROOTCA on the same stream, as Envoy does, sends both (state of the world).
	if err := c.Subscribe(NameDefault, NameRootCA); err != nil {
		t.Fatal(err)
	}
	r = recv(t, c)
	got = byName(t, r.GetResources())
	if len(got) != 2 {
		t.Fatalf("got %v, want default and ROOTCA", names(t, r))
	}
	if ca := got[NameRootCA].GetValidationContext().GetTrustedCa().GetInlineBytes(); string(ca) != string(rootsPEM(e.ca.Cert)) {
		t.Fatalf("ROOTCA trusted_ca = %q", ca)
	}
}

func TestStreamValidationContextNeverWithoutRoots(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault, NameRootCA); err != nil {
		t.Fatal(err)
	}
	waitDemand(t, e.cache, idAPI)
	if err := e.cache.SetBundle(&Bundle{}); err == nil {
		t.Fatal("empty bundle accepted")
	}
	e.issue(idAPI)
	r := recv(t, c)
	if got := names(t, r); !slices.Equal(got, []string{NameDefault}) {
		t.Fatalf("got %v, want default only (no bundle yet)", got)
	}
	c.Ack(r)
	e.setBundle()
	r = recv(t, c)
	if got := names(t, r); !slices.Equal(got, []string{NameRootCA, NameDefault}) {
		t.Fatalf("got %v", got)
	}
}

func TestStreamRotationReachesEverySubscribedStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	const nDefault, nRoot = 20, 5
	var def, root []*sdstest.Client
	for i := range nDefault + nRoot {
		c := newClient(t, ctx, e)
		name := NameDefault
		if i >= nDefault {
			name = NameRootCA
			root = append(root, c)
		} else {
			def = append(def, c)
		}
		if err := c.Subscribe(name); err != nil {
			t.Fatal(err)
		}
		if err := c.Ack(recv(t, c)); err != nil {
			t.Fatal(err)
		}
	}
	leaf := e.issue(idAPI)
	for _, c := range def {
		r := recv(t, c)
		if s := leafSerial(t, byName(t, r.GetResources())[NameDefault]); s != leaf.Cert.SerialNumber.String() {
			t.Fatalf("rotation: serial %s, want %s", s, leaf.Cert.SerialNumber)
		}
		if err := c.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	// ROOTCA-only streams got nothing for the identity rotation: their next response is
	// the bundle rotation (old and new roots together).
	ca2, err := sdstest.NewCA("second root")
	if err != nil {
		t.Fatal(err)
	}
	e.setBundle(e.ca.Cert, ca2.Cert)
	for _, c := range root {
		r := recv(t, c)
		got := byName(t, r.GetResources())
		if len(got) != 1 {
			t.Fatalf("ROOTCA stream got %v", names(t, r))
		}
		if ca := got[NameRootCA].GetValidationContext().GetTrustedCa().GetInlineBytes(); string(ca) != string(rootsPEM(e.ca.Cert, ca2.Cert)) {
			t.Fatal("ROOTCA during rotation does not hold both roots")
		}
	}
}

func TestStreamNackKeepsVersionAndDoesNotLoop(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	first := e.issue(idAPI)
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	r1 := recv(t, c)
	if err := c.Ack(r1); err != nil {
		t.Fatal(err)
	}
	second := e.issue(idAPI)
	r2 := recv(t, c)
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatal("rotation kept the version")
	}
	if err := c.Nack(r2, "bad key"); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has read the NACK: a rotation racing it would make the NACK
	// stale (it would quote an old nonce), which the server rightly ignores.
	eventually(t, func() bool { return strings.Contains(e.logs.String(), "bad key") })
	// The client keeps r1; the server must not resend r2. The next response is the next
	// rotation.
	third := e.issue(idAPI)
	r3 := recv(t, c)
	if s := leafSerial(t, byName(t, r3.GetResources())[NameDefault]); s != third.Cert.SerialNumber.String() {
		t.Fatalf("after NACK got serial %s (first %s, second %s), want the third %s", s,
			first.Cert.SerialNumber, second.Cert.SerialNumber, third.Cert.SerialNumber)
	}
	if c.Accepted() != r1.GetVersionInfo() {
		t.Fatalf("client accepted %s", c.Accepted())
	}
	if err := c.Ack(r3); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "NACK") {
		t.Fatalf("NACK not logged:\n%s", e.logs)
	}
}

func TestStreamStaleNonceIgnored(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	r1 := recv(t, c)
	if err := c.Ack(r1); err != nil {
		t.Fatal(err)
	}
	e.issue(idAPI)
	r2 := recv(t, c)
	// A request quoting r1's nonce after r2 went out is stale: its new name is ignored.
	if err := c.SendRaw(&discoveryv3.DiscoveryRequest{
		TypeUrl: SecretTypeURL, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce(),
		ResourceNames: []string{NameDefault, NameRootCA},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(r2); err != nil {
		t.Fatal(err)
	}
	leaf := e.issue(idAPI)
	r3 := recv(t, c)
	got := byName(t, r3.GetResources())
	if len(got) != 1 || leafSerial(t, got[NameDefault]) != leaf.Cert.SerialNumber.String() {
		t.Fatalf("after a stale request got %v, want only the rotated default", names(t, r3))
	}
}

func TestStreamBadAndUnauthorizedNamesLeftOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	e.issue(idWeb)
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	const role = "athenz://role/sports/readers"
	req := []string{
		NameDefault, "bogus", "spiffe://sports/sa/web", "spiffe://sports/sa/api", spiffeOf(idAPI),
		NameRootCA, "spiffe://" + td + "/ns/athenz/ca/default", "spiffe://" + td + "/ns/other/ca/x",
		role, "athenz://role/Bad Domain/x", "spiffe://UPPER/sa/api",
	}
	if err := c.Subscribe(req...); err != nil {
		t.Fatal(err)
	}
	r := recv(t, c)
	want := []string{NameRootCA, NameDefault, "spiffe://" + td + "/ns/athenz/ca/default", spiffeOf(idAPI), "spiffe://sports/sa/api"}
	slices.Sort(want)
	if got := names(t, r); !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if err := c.Ack(r); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	for _, s := range []string{"name=bogus reason=unknown_name", "name=spiffe://sports/sa/web reason=not_entitled", "/ns/other/ca/x reason=unknown_name",
		"name=" + role + " detail=" /* waiting, logged at debug level */} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q", s)
		}
	}
	// The role certificate was pending, not refused: it goes out when it arrives.
	rl, err := e.ca.IssueRole(idAPI, "sports", "readers", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.SetRoleCert(idAPI, "sports", "readers", &Credential{Chain: rl.Chain, Key: rl.Key}); err != nil {
		t.Fatal(err)
	}
	r = recv(t, c)
	got := byName(t, r.GetResources())
	if s := got[role]; s == nil || leafSerial(t, s) != rl.Cert.SerialNumber.String() {
		t.Fatalf("role certificate not served: %v", names(t, r))
	}
}

func TestStreamUnauthorizedPeer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func() envOptions
	}{
		{"fake authorizer", func() envOptions { return envOptions{grant: &Grant{Reason: "uid 4242 not allowed"}} }},
		{"sidecar authorizer, other uid", func() envOptions {
			a, err := NewSidecarAuthorizer([]string{idAPI}, []uint32{4242}, []uint32{4242})
			if err != nil {
				t.Fatal(err)
			}
			return envOptions{auth: a}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts())
			e.setBundle()
			e.issue(idAPI)
			ctx := streamCtx(t)
			c := newClient(t, ctx, e)
			if err := c.Subscribe(NameDefault, "spiffe://sports/sa/api", NameRootCA); err != nil {
				t.Fatal(err)
			}
			r := recv(t, c)
			if got := names(t, r); !slices.Equal(got, []string{NameRootCA}) {
				t.Fatalf("unentitled peer got %v, want ROOTCA only", got)
			}
			_, err := sdstest.Fetch(ctx, e.dial(), NameDefault)
			if status.Code(err) != codes.NotFound {
				t.Fatalf("FetchSecrets(default) = %v, want NotFound", err)
			}
			if !strings.Contains(e.logs.String(), "reason=not_entitled") {
				t.Fatalf("refusal not logged:\n%s", e.logs)
			}
		})
	}
}

func TestStreamAuthorizationRetried(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.auth.failures = 3
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	r := recv(t, c)
	if got := names(t, r); !slices.Equal(got, []string{NameDefault}) {
		t.Fatalf("got %v", got)
	}
	e.auth.mu.Lock()
	calls := e.auth.calls
	e.auth.mu.Unlock()
	if calls < 4 {
		t.Fatalf("authorizer called %d times, want >= 4", calls)
	}
}

func TestStreamRejectsWrongType(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.SendRaw(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", ResourceNames: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

func TestFetchSecrets(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := streamCtx(t)
	conn := e.dial()
	if _, err := sdstest.Fetch(ctx, conn, NameDefault); status.Code(err) != codes.NotFound {
		t.Fatalf("before the certificate: %v, want NotFound", err)
	}
	e.setBundle()
	leaf := e.issue(idAPI)
	r, err := sdstest.Fetch(ctx, conn, NameDefault, NameRootCA, "bogus")
	if err != nil {
		t.Fatal(err)
	}
	got := byName(t, r.GetResources())
	if len(got) != 2 || leafSerial(t, got[NameDefault]) != leaf.Cert.SerialNumber.String() {
		t.Fatalf("got %v", names(t, &discoveryv3.DiscoveryResponse{Resources: r.GetResources()}))
	}
	if r.GetVersionInfo() == "" {
		t.Fatal("no version_info")
	}
	r2, err := sdstest.Fetch(ctx, conn, NameRootCA, NameDefault)
	if err != nil {
		t.Fatal(err)
	}
	if r2.GetVersionInfo() != r.GetVersionInfo() {
		t.Fatal("same content, different version_info")
	}
}

// TestStreamDisconnectsLeaveNothing opens and drops streams while the server keeps
// running: every server-side stream goroutine and watcher must go away.
func TestStreamDisconnectsLeaveNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	conn := e.dial()
	// Warm the connection so its own goroutines are part of the baseline.
	if _, err := sdstest.Fetch(context.Background(), conn, NameDefault); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	var cancels []context.CancelFunc
	var clients []*sdstest.Client
	for i := range 40 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		var c *sdstest.Client
		var err error
		if i%2 == 0 {
			c, err = sdstest.NewClient(ctx, conn)
		} else {
			var d *sdstest.DeltaClient
			d, err = sdstest.NewDeltaClient(ctx, conn, nil)
			if err == nil {
				err = d.Subscribe(NameDefault, NameRootCA)
			}
			if err == nil {
				_, err = d.Recv()
			}
			if err == nil && i%4 == 1 {
				err = d.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(NameDefault, NameRootCA); err != nil {
			t.Fatal(err)
		}
		recv(t, c)
		clients = append(clients, c)
	}
	if len(e.cache.Demand()) == 0 {
		t.Fatal("no stream follows the identity")
	}
	for i, c := range clients {
		if i%2 == 0 {
			c.Close() // half-close, as a client shutting down cleanly
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before || len(e.cache.Demand()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d, before %d; demand %v", runtime.NumGoroutine(), before, e.cache.Demand())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
