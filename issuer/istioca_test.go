package issuer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

const (
	istioCluster  = "Kubernetes"
	istioProvider = "athenz-mesh.istio"
	kubeIssuer    = "https://kubernetes.default.svc.cluster.local"
	istioPodUID   = "6f1c3a52-0d8e-4b43-9f0a-2c1e5d7b8a90"
)

// istioEnv is an issuer serving the Istio CA API on 127.0.0.1:0, trusting one cluster
// whose signing key and JWKS file are made at test time.
type istioEnv struct {
	addr       string // host:port of the Istio CA API
	rootsFile  string // the CA roots, PEM
	roots      *x509.CertPool
	clusterKey crypto.Signer
	store      store.Store
	reg        *prometheus.Registry
	srv        *issuer.Server
}

func newIstioEnv(t *testing.T, mutate ...func(*issuer.IstioConfig)) *istioEnv {
	t.Helper()
	e := &istioEnv{reg: prometheus.NewRegistry()}
	dataDir, domainsDir := t.TempDir(), t.TempDir()
	for _, d := range []domainDoc{
		{Name: "sys.auth", Modified: "2026-01-01T00:00:00.000Z",
			Roles: []role{roleOf("sys.auth", "providers", istioProvider)},
			Policies: policiesOf("sys.auth", pol{Name: "sys.auth:policy.providers", Assertions: []assertion{
				{Role: "sys.auth:role.providers", Action: "launch", Resource: "sys.auth:instance"},
			}})},
		{Name: "sports", Modified: "2026-01-01T00:00:00.000Z",
			Roles: []role{roleOf("sports", "istio", istioProvider)},
			Policies: policiesOf("sports", pol{Name: "sports:policy.launch", Assertions: []assertion{
				{Role: "sports:role.istio", Action: "launch", Resource: "sports:service.*"},
			}})},
		// weather does not let the Istio provider launch its services.
		{Name: "weather", Modified: "2026-01-01T00:00:00.000Z"},
	} {
		writeDomain(t, domainsDir, d)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.clusterKey = k
	jwk, err := athenz.JWKFromPublicKey(k.Public(), "cluster-key", true)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(athenz.JWKS{Keys: []athenz.JWK{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	ic := issuer.IstioConfig{
		Listen: "127.0.0.1:0",
		Mapping: athenz.IstioMapping{Entries: []athenz.IstioMappingEntry{
			{Namespace: "sports", ServiceAccount: "*", Domain: "sports"},
			{Namespace: "weather", ServiceAccount: "*", Domain: "weather"},
		}},
		Clusters: []issuer.IstioClusterConfig{{ID: istioCluster, Offline: &issuer.K8sOfflineConfig{Issuer: kubeIssuer, JWKSFile: jwksFile}}},
	}
	for _, m := range mutate {
		m(&ic)
	}
	cfg := issuer.Config{
		Listen:  issuer.ListenConfig{Address: "127.0.0.1:0", Metrics: issuer.ListenOff},
		DataDir: dataDir,
		CA:      issuer.CAConfig{Create: true},
		Domains: issuer.DomainsConfig{Dir: domainsDir},
		Istio:   ic,
	}
	logs := &syncBuffer{}
	srv, err := issuer.New(cfg, issuer.Deps{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registry: e.reg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeIstio(ctx, ln, iln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		srv.Close()
		if t.Failed() {
			t.Logf("issuer log:\n%s", logs.String())
		}
	})
	e.addr = iln.Addr().String()
	e.roots = srv.CA().RootPool()
	e.rootsFile = filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(e.rootsFile, srv.CA().RootsPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// saToken is a pod-bound projected service-account token for namespace/sa, as
// kube-apiserver signs it (alg and kid, no typ), edited by edit.
func (e *istioEnv) saToken(t testing.TB, namespace, sa string, edit func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"aud": []string{"istio-ca"},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"iss": kubeIssuer,
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"pod":            map[string]any{"name": sa + "-7d9f8b6c5-x2x4q", "uid": istioPodUID},
			"serviceaccount": map[string]any{"name": sa, "uid": "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"},
		},
		"sub": "system:serviceaccount:" + namespace + ":" + sa,
	}
	if edit != nil {
		edit(c)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := athenz.SignJWS(e.clusterKey, athenz.JWSHeader{Kid: "cluster-key"}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// istioCSR builds a CSR as istio-agent's pkiutil.GenCSR does: subject O = "" (an empty
// organization), no CN, and one critical subjectAltName extension with the URIs and DNS
// names given.
func istioCSR(t testing.TB, key crypto.Signer, uris []string, dns ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{""}}}
	if len(uris)+len(dns) > 0 {
		// Build the extension through a throwaway certificate template, so that the SAN
		// encoding is crypto/x509's and only the criticality is Istio's.
		var us []*url.URL
		for _, u := range uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			us = append(us, pu)
		}
		probe := &x509.CertificateRequest{URIs: us, DNSNames: dns}
		der, err := x509.CreateCertificateRequest(rand.Reader, probe, key)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		for _, ext := range parsed.Extensions {
			if ext.Id.Equal([]int{2, 5, 29, 17}) {
				ext.Critical = true
				tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
			}
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// stubClient is the generated istio.io/api client over a real TLS connection, verifying
// the issuer's certificate against its CA.
func (e *istioEnv) stubClient(t testing.TB) pb.IstioCertificateServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewIstioCertificateServiceClient(conn)
}

// call sends CreateCertificate with the metadata istio-agent sends: "authorization:
// Bearer <token>" (when token is set) and "ClusterID" (when cluster is set).
func call(t testing.TB, c pb.IstioCertificateServiceClient, token, cluster, csr string, validity int64) (*pb.IstioCertificateResponse, error) {
	t.Helper()
	var kv []string
	if token != "" {
		kv = append(kv, "authorization", "Bearer "+token)
	}
	if cluster != "" {
		kv = append(kv, "ClusterID", cluster)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
	return c.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: validity})
}

// parseChain decodes the response chain, one certificate per element.
func parseChain(t testing.TB, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, p := range chain {
		b, rest := pem.Decode([]byte(p))
		if b == nil || strings.TrimSpace(string(rest)) != "" {
			t.Fatalf("cert_chain[%d] is not one PEM certificate: %q", i, p)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("cert_chain[%d]: %v", i, err)
		}
		out = append(out, c)
	}
	return out
}

// checkIssued checks a successful answer: at least leaf and root, leaf first with
// exactly the Istio SPIFFE ID and the mapped Athenz principal as CN, the issuer's root
// last, the leaf verifying through the chain to that root, and the lifetime.
func checkIssued(t testing.TB, e *istioEnv, chain []string, spiffeID, cn string, wantLife time.Duration) *x509.Certificate {
	t.Helper()
	certs := parseChain(t, chain)
	if len(certs) < 2 {
		t.Fatalf("cert_chain has %d certificates; want leaf ... root", len(certs))
	}
	leaf, root := certs[0], certs[len(certs)-1]
	if !root.Equal(e.srv.CA().Root()) {
		t.Errorf("last element is %q, want the issuer's root %q", root.Subject, e.srv.CA().Root().Subject)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf SANs %v %v %v %v; want only %s", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, spiffeID)
	}
	if leaf.Subject.CommonName != cn {
		t.Errorf("leaf CN %q, want %q", leaf.Subject.CommonName, cn)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1 : len(certs)-1] {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify to the root: %v", err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if life < wantLife || life > wantLife+10*time.Minute { // NotBefore is backdated a little
		t.Errorf("lifetime %s, want %s (plus the backdating)", life, wantLife)
	}
	rec, err := e.store.CertificateBySerial(context.Background(), store.SerialString(leaf.SerialNumber))
	if err != nil || rec.Provider != istioProvider || athenz.Principal(rec.Domain, rec.Service) != cn || rec.InstanceID != istioPodUID {
		t.Errorf("store record %+v, %v; want provider %s, %s, instance %s", rec, err, istioProvider, cn, istioPodUID)
	}
	return leaf
}

func TestIstioCreateCertificate(t *testing.T) {
	e := newIstioEnv(t, func(c *issuer.IstioConfig) { c.MaxValidity = 12 * time.Hour })
	client := e.stubClient(t)
	key := newP256(t)
	good := "spiffe://cluster.local/ns/sports/sa/api"
	tok := e.saToken(t, "sports", "api", nil)
	ed := func() crypto.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSig := func() string {
		b, _ := pem.Decode([]byte(istioCSR(t, key, []string{good})))
		b.Bytes[len(b.Bytes)-3] ^= 0xff
		return string(pem.EncodeToMemory(b))
	}
	for _, tc := range []struct {
		name     string
		token    string
		cluster  string
		csr      string
		validity int64
		code     codes.Code
		msg      string // in the status message
		cn       string // success: the mapped principal
		life     time.Duration
	}{
		{name: "success, validity asked", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{good}), validity: 3600, cn: "sports.api", life: time.Hour},
		{name: "success, validity capped by istio.max_validity", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{good}), validity: 30 * 86400, cn: "sports.api", life: 12 * time.Hour},
		{name: "success, no validity asked: certificates.default_validity capped", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{good}), cn: "sports.api", life: 12 * time.Hour},
		{name: "missing token", cluster: istioCluster, csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "no service-account token"},
		{name: "not a bearer token", token: "x", cluster: istioCluster, csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "not a service-account token"},
		{name: "wrong audience", token: e.saToken(t, "sports", "api", func(c map[string]any) { c["aud"] = []string{"kubernetes"} }), cluster: istioCluster,
			csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "wrong_audience"},
		{name: "expired token", token: e.saToken(t, "sports", "api", func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		}), cluster: istioCluster, csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "expired"},
		{name: "unknown cluster", token: tok, cluster: "other", csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "not configured"},
		{name: "missing cluster", token: tok, csr: istioCSR(t, key, []string{good}), code: codes.Unauthenticated, msg: "ClusterID"},
		{name: "unmapped namespace", token: e.saToken(t, "kube-system", "coredns", nil), cluster: istioCluster,
			csr: istioCSR(t, key, []string{"spiffe://cluster.local/ns/kube-system/sa/coredns"}), code: codes.PermissionDenied, msg: "unmapped"},
		{name: "launch not allowed by the domain", token: e.saToken(t, "weather", "temp", nil), cluster: istioCluster,
			csr: istioCSR(t, key, []string{"spiffe://cluster.local/ns/weather/sa/temp"}), code: codes.PermissionDenied, msg: "not authorized to launch weather.temp"},
		{name: "CSR SAN of another service account", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{"spiffe://cluster.local/ns/sports/sa/web"}),
			code: codes.PermissionDenied, msg: "the token proves"},
		{name: "CSR SAN in another trust domain", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{"spiffe://other.mesh/ns/sports/sa/api"}),
			code: codes.PermissionDenied, msg: "trust domain"},
		{name: "CSR without SPIFFE ID", token: tok, cluster: istioCluster, csr: istioCSR(t, key, nil), code: codes.PermissionDenied, msg: "no SPIFFE ID"},
		{name: "extra DNS SAN", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{good}, "api.sports.svc"), code: codes.PermissionDenied, msg: "DNS name"},
		{name: "extra URI SAN", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{good, "spiffe://cluster.local/ns/sports/sa/web"}), code: codes.PermissionDenied, msg: "2 URI SANs"},
		{name: "other URI instead of SPIFFE", token: tok, cluster: istioCluster, csr: istioCSR(t, key, []string{"https://sports.example.com/api"}), code: codes.PermissionDenied, msg: "the token proves"},
		{name: "garbage CSR", token: tok, cluster: istioCluster, csr: "not a CSR", code: codes.InvalidArgument, msg: "not a PEM CSR"},
		{name: "empty CSR", token: tok, cluster: istioCluster, code: codes.InvalidArgument, msg: "PEM"},
		{name: "bad CSR signature", token: tok, cluster: istioCluster, csr: badSig(), code: codes.InvalidArgument, msg: "signature"},
		{name: "Ed25519 key", token: tok, cluster: istioCluster, csr: istioCSR(t, ed(), []string{good}), code: codes.InvalidArgument, msg: "Ed25519"},
		{name: "P-224 key", token: tok, cluster: istioCluster, csr: istioCSR(t, p224, []string{good}), code: codes.InvalidArgument, msg: "curve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := call(t, client, tc.token, tc.cluster, tc.csr, tc.validity)
			if tc.cn != "" {
				if err != nil {
					t.Fatalf("CreateCertificate: %v", err)
				}
				checkIssued(t, e, resp.CertChain, good, tc.cn, tc.life)
				return
			}
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("status %v %q; want %v with %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
	var okCount float64
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
			if labels["route"] == "istio_create_certificate" && labels["code"] == "OK" {
				okCount = m.GetCounter().GetValue()
			}
		}
	}
	if okCount != 3 {
		t.Errorf("athenz_mesh_issuer_requests_total{route=istio_create_certificate,code=OK} = %v, want 3", okCount)
	}
}

// TestIstioRSAAndHealth: istio-agent's default key is RSA 2048, and the listener answers
// gRPC health for the service.
func TestIstioRSAAndHealth(t *testing.T) {
	e := newIstioEnv(t, func(c *issuer.IstioConfig) {
		c.TrustDomain = "mesh.example"
		c.Mapping = athenz.IstioMapping{Rule: &athenz.IstioNamingRule{DomainPrefix: "", Separator: "--"}}
	})
	client := e.stubClient(t)
	id := "spiffe://mesh.example/ns/sports/sa/api"
	resp, err := call(t, client, e.saToken(t, "sports", "api", nil), istioCluster, istioCSR(t, serviceKey("sports.rsa"), []string{id}), 7200)
	if err != nil {
		t.Fatal(err)
	}
	checkIssued(t, e, resp.CertChain, id, "sports.api", 2*time.Hour)

	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, svc := range []string{"", "istio.v1.auth.IstioCertificateService"} {
		h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, %v", svc, h, err)
		}
	}
}

func TestIstioConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want string
	}{
		"no clusters":       {"istio: {listen: ':15012'}", "istio.clusters: at least one"},
		"bad listen":        {"istio: {listen: 'x', clusters: [{id: K, token_review: {}}]}", "istio.listen"},
		"cluster twice":     {"istio: {listen: ':1', clusters: [{id: K, token_review: {}}, {id: K, token_review: {}}]}", "configured twice"},
		"both verifiers":    {"istio: {listen: ':1', clusters: [{id: K, token_review: {}, offline: {issuer: 'https://k'}}]}", "exactly one of offline and token_review"},
		"bad trust domain":  {"istio: {trust_domain: 'Bad Domain'}", "istio.trust_domain"},
		"bad mapping":       {"istio: {mapping: {entries: [{namespace: Sports, service_account: api, domain: s, service: a}]}}", "istio.mapping"},
		"provider reused":   {"istio: {provider: sys.auth.zts}", "istio.provider"},
		"negative validity": {"istio: {max_validity: -1h}", "istio.max_validity"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := issuer.DecodeConfig(strings.NewReader("domains: {dir: d}\n" + tc.yaml + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
