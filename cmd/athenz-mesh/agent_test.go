package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/athenz-mesh/athenz-mesh/sds"
	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// agentUnderTest is a running agent with a fake clock.
type agentUnderTest struct {
	a     *agent
	clock *fakeClock
	dir   string
	log   *lockedBuffer
}

func startAgent(t *testing.T, ti *testIssuer, clock *fakeClock, extra string) *agentUnderTest {
	t.Helper()
	dir := shortTempDir(t)
	token := ti.joinToken(t, "sports", "api", clock.Now().Add(time.Hour))
	cfgPath := ti.agentYAML(t, dir, token, extra)
	cfg, err := loadAgentConfig(nil, agentFlags{config: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	a, err := newAgent(cfg, agentDeps{
		log: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})), reg: prometheus.NewRegistry(),
		clock: clock, rand: func() float64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
		a.Close()
		if t.Failed() {
			t.Logf("agent log:\n%s", logBuf.String())
		}
	})
	return &agentUnderTest{a: a, clock: clock, dir: dir, log: logBuf}
}

// leafOfSecret returns the leaf certificate of the tls_certificate secret named name.
func leafOfSecret(t *testing.T, r *discoveryv3.DiscoveryResponse, name string) *x509.Certificate {
	t.Helper()
	for _, res := range r.GetResources() {
		s, err := sdstest.DecodeSecret(res)
		if err != nil {
			t.Fatal(err)
		}
		if s.GetName() != name {
			continue
		}
		b, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
		if b == nil {
			t.Fatalf("secret %s has no certificate chain", name)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Fatalf("response has no secret %s", name)
	return nil
}

func secretNames(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	var names []string
	for _, res := range r.GetResources() {
		s, err := sdstest.DecodeSecret(res)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, s.GetName())
	}
	return names
}

// TestAgentEndToEnd runs a real issuer and a real agent on a Unix socket: an SDS client
// that behaves as Envoy gets default, ROOTCA and the role certificate; a renewal pushes
// the new certificate; files are written with the right modes; an issuer outage leaves
// the certificate served until the issuer is back; a certificate that expires during an
// outage is withdrawn.
func TestAgentEndToEnd(t *testing.T) {
	clock := newFakeClock()
	ti := startTestIssuer(t, clock.Now)
	au := startAgent(t, ti, clock, "certificates: {retry_min: 1m, retry_max: 4m}\n")
	clock.waitArmed(t) // registered, role certificate issued, asleep until the renewal

	conn, err := sdstest.Dial(au.a.server.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := sdstest.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	leaf1 := firstSecrets(t, client)
	checkFiles(t, au, leaf1)

	leaf2 := renewal(t, au, client, leaf1)
	checkFiles(t, au, leaf2)
	testTokens(t, au)

	leaf3 := outageAndRecovery(t, au, ti, client, conn, leaf2)

	// A longer outage: once the certificate expires it is withdrawn (fail closed) and the
	// agent is not ready any more.
	ti.proxy.setBroken(true)
	clock.Advance(leaf3.NotAfter.Sub(clock.Now()) + time.Second)
	clock.waitArmed(t)
	if _, err := sdstest.Fetch(ctx, conn, "default"); err == nil {
		t.Error("an expired certificate is still served")
	}
	if err := au.a.manager.Ready(); err == nil {
		t.Error("the agent is ready without a valid certificate")
	}
	resp, err := http.Get("http://" + au.a.metricLn.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after expiry, want 503", resp.StatusCode)
	}
}

const roleName = "athenz://role/sports/readers"

// firstSecrets subscribes as Envoy does and checks the first response: the identity in
// the Athenz conventions, the bundle and the role certificate.
func firstSecrets(t *testing.T, client *sdstest.Client) *x509.Certificate {
	t.Helper()
	if err := client.Subscribe("default", "ROOTCA", roleName); err != nil {
		t.Fatal(err)
	}
	first, err := client.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(slices.Sorted(slices.Values(secretNames(t, first))), ","); got != "ROOTCA,"+roleName+",default" {
		t.Fatalf("first response has %s", got)
	}
	leaf := leafOfSecret(t, first, "default")
	if leaf.Subject.CommonName != "sports.api" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "api.sports.athenz.cloud" {
		t.Errorf("certificate CN %q DNS %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if uris := uriStrings(leaf); strings.Join(uris, " ") != "spiffe://sports/sa/api athenz://instanceid/"+testJoinProvider+"/node-1" {
		t.Errorf("certificate URIs %v", uris)
	}
	if err := client.Ack(first); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// renewal advances past half the lifetime: the manager refreshes over mTLS with a new
// key and gets a new role certificate for it; the stream receives both.
func renewal(t *testing.T, au *agentUnderTest, client *sdstest.Client, leaf1 *x509.Certificate) *x509.Certificate {
	t.Helper()
	au.clock.Advance(13 * time.Hour)
	au.clock.waitArmed(t)
	r, err := client.Recv()
	if err != nil {
		t.Fatal(err)
	}
	leaf2 := leafOfSecret(t, r, "default")
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || samePublicKey(leaf2, leaf1) {
		t.Fatal("the pushed certificate is not a new certificate with a new key")
	}
	for !samePublicKey(leafOfSecret(t, r, roleName), leaf2) {
		// The identity rotated first; the role certificate for the new key follows.
		if err := client.Ack(r); err != nil {
			t.Fatal(err)
		}
		if r, err = client.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Ack(r); err != nil {
		t.Fatal(err)
	}
	return leaf2
}

// outageAndRecovery breaks the issuer at the renewal point: the renewal fails, the
// current certificate is still served, the manager backs off; when the issuer is back
// the retry succeeds and the new certificate is pushed.
func outageAndRecovery(t *testing.T, au *agentUnderTest, ti *testIssuer, client *sdstest.Client, conn *grpc.ClientConn, leaf2 *x509.Certificate) *x509.Certificate {
	t.Helper()
	ti.proxy.setBroken(true)
	au.clock.Advance(13 * time.Hour)
	if d := au.clock.waitArmed(t); d != 30*time.Second {
		t.Errorf("first retry after %s, want 30s (1m halved by the zero jitter)", d)
	}
	st := au.a.manager.Status()[0]
	if st.Failures != 1 || !st.Valid || st.LastError == "" {
		t.Errorf("status during the outage: %+v", st)
	}
	if got := fetchLeaf(t, conn); got.SerialNumber.Cmp(leaf2.SerialNumber) != 0 {
		t.Error("the agent stopped serving its valid certificate during the outage")
	}
	ti.proxy.setBroken(false)
	au.clock.Advance(30 * time.Second)
	au.clock.waitArmed(t)
	r, err := client.Recv()
	if err != nil {
		t.Fatal(err)
	}
	leaf3 := leafOfSecret(t, r, "default")
	if leaf3.SerialNumber.Cmp(leaf2.SerialNumber) == 0 {
		t.Fatal("no new certificate after the issuer came back")
	}
	if st := au.a.manager.Status()[0]; st.Failures != 0 {
		t.Errorf("failures after recovery: %+v", st)
	}
	return leaf3
}

func samePublicKey(a, b *x509.Certificate) bool {
	return a.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(b.PublicKey)
}

func uriStrings(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

func fetchLeaf(t *testing.T, conn *grpc.ClientConn) *x509.Certificate {
	t.Helper()
	r, err := sdstest.Fetch(context.Background(), conn, "default")
	if err != nil {
		t.Fatal(err)
	}
	return leafOfSecret(t, r, "default")
}

// checkFiles checks the SIA layout after a renewal: the files hold leaf and its key,
// with the right modes, and no temporary file is left.
func checkFiles(t *testing.T, au *agentUnderTest, leaf *x509.Certificate) {
	t.Helper()
	sia := filepath.Join(au.dir, "sia")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"keys/sports.api.key.pem", 0o600},
		{"certs/sports.api.cert.pem", 0o644},
		{"certs/ca.cert.pem", 0o644},
		{"certs/sports:role.readers.cert.pem", 0o644},
	} {
		fi, err := os.Stat(filepath.Join(sia, f.path))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	files, err := sds.NewFiles(sds.FilesConfig{Dir: sia})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := files.LoadIdentity("sports", "api")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Chain[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("the certificate file holds serial %x, the agent serves %x", cred.Chain[0].SerialNumber, leaf.SerialNumber)
	}
	noTempFiles(t, filepath.Join(sia, "keys"))
	noTempFiles(t, filepath.Join(sia, "certs"))
}

// testTokens gets an access token and a role token as sports.api over mTLS, through the
// manager's TokenFetcher.
func testTokens(t *testing.T, au *agentUnderTest) {
	t.Helper()
	ctx := context.Background()
	at, err := au.a.manager.AccessToken(ctx, "sports.api", sds.AccessTokenRequest{Domain: "sports", Roles: []string{"readers"}})
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	if strings.Count(at.Value, ".") != 2 || !at.Expiry.After(time.Now()) {
		t.Errorf("access token %d bytes, expiry %s", len(at.Value), at.Expiry)
	}
	rt, err := au.a.manager.RoleToken(ctx, "sports.api", sds.RoleTokenRequest{Domain: "sports", Roles: []string{"readers"}})
	if err != nil {
		t.Fatalf("role token: %v", err)
	}
	if !strings.HasPrefix(rt.Value, "v=Z1;") {
		t.Errorf("role token does not look like one")
	}
	_, err = au.a.manager.AccessToken(ctx, "sports.api", sds.AccessTokenRequest{Domain: "sports", Roles: []string{"writers"}})
	var se sds.IssuerStatusError
	if !errors.As(err, &se) || se.IssuerStatus() != http.StatusForbidden {
		t.Errorf("access token for a role not held: %v, want the issuer's 403", err)
	}
	if _, err := au.a.manager.AccessToken(ctx, "weather.api", sds.AccessTokenRequest{Domain: "sports"}); !errors.Is(err, sds.ErrIdentityUnavailable) {
		t.Errorf("access token for an identity the agent does not have: %v", err)
	}
}

// TestAgentOneShot runs the one-shot commands against a real issuer: register writes the
// files, rotate and rolecert reuse them, and a spent join token fails with the issuer's
// reason and exit status 1.
func TestAgentOneShot(t *testing.T) {
	ti := startTestIssuer(t, nil)
	dir := shortTempDir(t)
	token := ti.joinToken(t, "sports", "api", time.Now().Add(time.Hour))
	cfg := ti.agentYAML(t, dir, token, "")
	sia := filepath.Join(dir, "sia")

	runCLI(t, "agent", "rotate", "--config", cfg).expect(t, 1, "run 'register' first")
	runCLI(t, "agent", "register", "--config", cfg).expect(t, 0, "sports.api: certificate valid until")
	files, err := sds.NewFiles(sds.FilesConfig{Dir: sia})
	if err != nil {
		t.Fatal(err)
	}
	first, err := files.LoadIdentity("sports", "api")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"certs/ca.cert.pem", "certs/sports:role.readers.cert.pem"} {
		if _, err := os.Stat(filepath.Join(sia, f)); err != nil {
			t.Error(err)
		}
	}
	runCLI(t, "agent", "rotate", "--config", cfg).expect(t, 0, "sports.api")
	second, err := files.LoadIdentity("sports", "api")
	if err != nil {
		t.Fatal(err)
	}
	if second.Chain[0].SerialNumber.Cmp(first.Chain[0].SerialNumber) == 0 {
		t.Error("rotate did not replace the certificate")
	}
	runCLI(t, "agent", "rolecert", "--config", cfg).expect(t, 0, "sports.api")
	// The join token is spent: registering again is refused by the issuer.
	r := runCLI(t, "agent", "register", "--config", cfg)
	r.expect(t, 1, "register sports.api", "issuer: 403")
	if strings.Contains(r.stderr, strings.TrimSpace(readFile(t, token))) {
		t.Error("the join token was printed")
	}
	noTempFiles(t, filepath.Join(sia, "keys"))
	runCLI(t, "agent", "register", "--config", cfg, "--files-dir", "").expect(t, 2, "files.dir")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAgentBadConfig checks that the command reports every problem of a config with
// exit status 2, and that --check-config accepts the example.
func TestAgentBadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		body string
		args []string
		want []string
	}{
		{"unknown key", "issuer: {url: https://i/zts/v1}\nidentitys: []\n", nil, []string{"line 2", "identitys"}},
		{"every problem at once", "issuer: {url: http://i/zts/v1}\nmode: mesh\nfiles: {key_mode: \"0644\"}\n", nil,
			[]string{"must be https", "mode \"mesh\"", "files.key_mode"}},
		{"bad identity", "issuer: {url: https://i/zts/v1}\nidentities:\n  - {domain: sports, service: a.b, provider: p.q, attestation: {kind: magic}}\n", nil,
			[]string{"identities[0].service", "identities[0].attestation: kind \"magic\""}},
		{"flag makes it bad", "issuer: {url: https://i/zts/v1}\nidentities:\n  - {domain: sports, service: api, provider: p.q, attestation: {kind: k8s}}\n",
			[]string{"--token-api-addr", "0.0.0.0:4080"}, []string{"loopback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := write(strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.body)
			args := append([]string{"agent", "--config", cfg, "--check-config"}, tc.args...)
			runCLI(t, args...).expect(t, 2, tc.want...)
		})
	}
	runCLI(t, "agent", "--socket", "/tmp/x").expect(t, 2, "--config is required")
	runCLI(t, "agent", "serve").expect(t, 2, "unknown command")
	runCLI(t, "agent").expect(t, 0, "register", "rotate", "rolecert")
}
