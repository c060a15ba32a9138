package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// Test principals and their registered keys, generated once per test binary.
var (
	keysOnce sync.Once
	testKeys map[string]crypto.Signer
)

// serviceKey returns the registered key of a test service ("sports.api", ...).
func serviceKey(principal string) crypto.Signer {
	keysOnce.Do(func() {
		testKeys = map[string]crypto.Signer{}
		for _, p := range []string{"sports.api", "sports.ops", "sports.web", "weather.temp", "other.key", "limits.api"} {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			testKeys[p] = k
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKeys["sports.rsa"] = rk
	})
	return testKeys[principal]
}

func entry(t testing.TB, k crypto.Signer) string {
	t.Helper()
	e, err := athenz.EncodePublicKeyEntry(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// countingStore counts the certificates recorded, so tests can assert nothing was issued.
type countingStore struct {
	store.Store
	puts atomic.Int64
}

func (c *countingStore) PutCertificate(ctx context.Context, cert store.Certificate) error {
	err := c.Store.PutCertificate(ctx, cert)
	if err == nil {
		c.puts.Add(1)
	}
	return err
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a running issuer on 127.0.0.1:0 with TLS, a fresh CA, keys and SQLite store.
type env struct {
	srv        *issuer.Server
	base       string // https://127.0.0.1:port/zts/v1
	dataDir    string
	domainsDir string
	roots      *x509.CertPool
	store      *countingStore
	log        *syncBuffer
	reg        *prometheus.Registry
	now        atomic.Pointer[time.Time]
}

// clock returns the env's time: the wall clock, or a fixed time once setNow was called.
func (e *env) clock() time.Time {
	if p := e.now.Load(); p != nil {
		return *p
	}
	return time.Now()
}

func (e *env) setNow(t time.Time) { e.now.Store(&t) }

func newEnv(t testing.TB, mutate ...func(*issuer.Config)) *env {
	t.Helper()
	e := &env{dataDir: t.TempDir(), domainsDir: t.TempDir(), log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	for _, d := range testDomains(t) {
		writeDomain(t, e.domainsDir, d)
	}
	st, err := store.Open(context.Background(), store.Config{DataDir: e.dataDir})
	if err != nil {
		t.Fatal(err)
	}
	e.store = &countingStore{Store: st}
	t.Cleanup(func() { st.Close() })
	cfg := issuer.Config{
		Listen:    issuer.ListenConfig{Address: "127.0.0.1:0", Metrics: issuer.ListenOff, MaxLongPoll: 10 * time.Second},
		DataDir:   e.dataDir,
		CA:        issuer.CAConfig{Create: true},
		Domains:   issuer.DomainsConfig{Dir: e.domainsDir, PollInterval: 20 * time.Millisecond},
		Providers: []issuer.ProviderConfig{{Name: joinProvider, Attestor: issuer.AttestorJoinToken}},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := issuer.New(cfg, issuer.Deps{Logger: log, Registry: e.reg, Store: e.store, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
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
			t.Errorf("serve: %v", err)
		}
		srv.Close()
		if t.Failed() {
			t.Logf("issuer log:\n%s", e.log.String())
		}
	})
	e.base = "https://" + ln.Addr().String() + issuer.BasePath
	e.roots = srv.CA().RootPool()
	return e
}

// client returns an HTTPS client trusting the CA, presenting cert when given.
func (e *env) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

// response is an HTTP answer.
type response struct {
	status int
	body   []byte
	header http.Header
}

// errorBody decodes an Athenz error body, failing the test if it is not one.
func (r response) errorBody(t testing.TB) issuer.ErrorBody {
	t.Helper()
	var eb issuer.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Code != r.status || eb.Message == "" {
		t.Fatalf("status %d: body %q is not an Athenz error body", r.status, r.body)
	}
	return eb
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends a request; body is JSON-encoded unless it is a string or []byte.
func (e *env) call(t testing.TB, c *http.Client, method, path string, body any, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case url.Values:
		rd = strings.NewReader(b.Encode())
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := body.(url.Values); ok {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: data, header: resp.Header}
}

// csrSpec describes a test CSR.
type csrSpec struct {
	key    crypto.Signer
	cn     string
	dns    []string
	uris   []string
	emails []string
	isCA   bool
}

func makeCSR(t testing.TB, s csrSpec) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn, Organization: []string{"Oath Inc."}}, DNSNames: s.dns, EmailAddresses: s.emails}
	for _, u := range s.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if s.isCA {
		v, err := asn1.Marshal(struct{ IsCA bool }{true})
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// serviceCSR is a service CSR for domain.service with the standard names and, when
// instance is set, the instance id URI of provider.
func serviceCSR(t testing.TB, key crypto.Signer, domain, service, provider, instance string) string {
	s := csrSpec{key: key, cn: domain + "." + service, dns: []string{athenz.ServiceDNSName(domain, service, "athenz.cloud")},
		uris: []string{athenz.SpiffeID("", "", domain, service)}}
	if instance != "" {
		s.uris = append(s.uris, athenz.InstanceIDURI(provider, instance))
	}
	return makeCSR(t, s)
}

// ntoken makes an n-token for principal signed with key, valid from iat for life.
func ntoken(t testing.TB, principal string, key crypto.Signer, keyID string, iat time.Time, life time.Duration) string {
	t.Helper()
	d, s, _ := athenz.SplitPrincipal(principal)
	tok, err := (&athenz.NToken{Domain: d, Name: s, KeyID: keyID, IssueTime: iat, ExpiryTime: iat.Add(life)}).Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tlsCert pairs a PEM certificate with its key.
func tlsCert(t testing.TB, certPEM string, key crypto.Signer) *tls.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		t.Fatalf("no PEM certificate in %q", certPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}
}

func parseCert(t testing.TB, certPEM string) *x509.Certificate {
	t.Helper()
	return tlsCert(t, certPEM, nil).Leaf
}

// register registers domain.service instance through sys.auth.zts with an n-token of the
// service's registered key and returns the certificate.
func (e *env) registerNToken(t testing.TB, principal, instance string) (issuer.InstanceIdentity, response) {
	t.Helper()
	d, s, _ := athenz.SplitPrincipal(principal)
	key := serviceKey(principal)
	req := issuer.InstanceRegisterInformation{
		Provider: issuer.ZTSProviderName, Domain: d, Service: s,
		AttestationData: ntoken(t, principal, key, "0", time.Now(), 10*time.Minute),
		CSR:             serviceCSR(t, key, d, s, issuer.ZTSProviderName, instance),
	}
	r := e.call(t, e.client(nil), "POST", "/instance", req)
	var id issuer.InstanceIdentity
	if r.status == 201 {
		r.decode(t, &id)
	}
	return id, r
}

// serviceCert gets a service certificate for principal through the n-token refresh path
// (no instance id) and returns it as a client certificate.
func (e *env) serviceCert(t testing.TB, principal string) *tls.Certificate {
	t.Helper()
	d, s, _ := athenz.SplitPrincipal(principal)
	key := serviceKey(principal)
	r := e.call(t, e.client(nil), "POST", "/instance/"+d+"/"+s+"/refresh",
		issuer.InstanceRefreshRequest{CSR: serviceCSR(t, key, d, s, "", "")},
		issuer.DefaultNTokenHeader, ntoken(t, principal, key, "0", time.Now(), 10*time.Minute))
	if r.status != 200 {
		t.Fatalf("service cert for %s: %d %s", principal, r.status, r.body)
	}
	var id issuer.Identity
	r.decode(t, &id)
	return tlsCert(t, id.Certificate, key)
}

// ztsSigner reads the issuer's generated ZTS key from the data directory.
func (e *env) ztsSigner(t testing.TB) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dataDir, "zts.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := athenz.ParsePrivateKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// expectNotFound asserts that err is the store's ErrNotFound.
func expectNotFound(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("store: got %v, want not found", err)
	}
}

type (
	tlsCertificate = tls.Certificate
	cryptoSigner   = crypto.Signer
)

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// requests returns athenz_mesh_issuer_requests_total{route, code}.
func (e *env) requests(t testing.TB, route, code string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "athenz_mesh_issuer_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func asError(err error, target **issuer.Error) bool { return errors.As(err, target) }
