package sds

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// testManager is a Manager for the pure parts (CSRs, schedules); its Issuer is never
// called.
func testManager(t *testing.T, cfg ManagerConfig, r float64) *Manager {
	t.Helper()
	if cfg.Identities == nil {
		cfg.Identities = []IdentitySpec{{Domain: "sports", Service: "api", Provider: "athenz-mesh.k8s", InstanceID: "i-1", Collector: stubCollector{}}}
	}
	m, err := NewManager(cfg, ManagerDeps{Issuer: unusedIssuer{}, Sink: NewCache(), Rand: func() float64 { return r }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type stubCollector struct{}

func (stubCollector) Collect(context.Context, attestor.Target) (string, error) { return "x", nil }

// unusedIssuer satisfies the interface for tests that never reach the issuer.
type unusedIssuer struct{ Issuer }

func TestServiceCSRFollowsAthenzConventions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      ManagerConfig
		ns       string
		wantDNS  []string
		wantURIs []string
	}{
		{"short SPIFFE form", ManagerConfig{DNSSuffixes: []string{"athenz.cloud"}}, "",
			[]string{"api.sports-prod.athenz.cloud"}, []string{"spiffe://sports.prod/sa/api", "athenz://instanceid/athenz-mesh.k8s/i-1"}},
		{"trust domain form", ManagerConfig{SpiffeTrustDomain: "cluster.local"}, "payments",
			nil, []string{"spiffe://cluster.local/ns/payments/sa/sports.prod.api", "athenz://instanceid/athenz-mesh.k8s/i-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testManager(t, tc.cfg, 0)
			spec := &IdentitySpec{Domain: "sports.prod", Service: "api", Provider: "athenz-mesh.k8s"}
			key, _ := newKey("")
			csrPEM, err := m.serviceCSR(spec, key, "i-1", tc.ns)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := pem.Decode(csrPEM)
			csr, err := x509.ParseCertificateRequest(b.Bytes)
			if err != nil || csr.CheckSignature() != nil {
				t.Fatalf("CSR: %v", err)
			}
			if csr.Subject.CommonName != "sports.prod.api" || strings.Join(csr.Subject.OrganizationalUnit, "") != "athenz-mesh.k8s" {
				t.Errorf("subject %v", csr.Subject)
			}
			if strings.Join(csr.DNSNames, " ") != strings.Join(tc.wantDNS, " ") {
				t.Errorf("DNS %v, want %v", csr.DNSNames, tc.wantDNS)
			}
			var uris []string
			for _, u := range csr.URIs {
				uris = append(uris, u.String())
			}
			if strings.Join(uris, " ") != strings.Join(tc.wantURIs, " ") {
				t.Errorf("URIs %v, want %v", uris, tc.wantURIs)
			}
		})
	}
}

func TestRoleCSR(t *testing.T) {
	m := testManager(t, ManagerConfig{}, 0)
	spec := &IdentitySpec{Domain: "sports", Service: "api", Provider: "p.q"}
	key, _ := newKey(KeyRSA2048)
	csrPEM, err := m.roleCSR(spec, RoleSpec{"weather", "readers"}, key, "i-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(csrPEM)
	csr, _ := x509.ParseCertificateRequest(b.Bytes)
	var uris []string
	for _, u := range csr.URIs {
		uris = append(uris, u.String())
	}
	want := "spiffe://weather/ra/readers athenz://principal/sports.api athenz://instanceid/p.q/i-1"
	if csr.Subject.CommonName != "weather:role.readers" || strings.Join(uris, " ") != want {
		t.Errorf("role CSR CN %q URIs %v", csr.Subject.CommonName, uris)
	}
}

func TestBackoffAndRenewPoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r        float64
		failures int
		want     time.Duration
	}{
		{"first failure, no jitter", 0, 1, 500 * time.Millisecond},
		{"first failure, full", 0.999999, 1, time.Second},
		{"doubles", 0, 3, 2 * time.Second},
		{"capped", 0, 30, 150 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testManager(t, ManagerConfig{}, tc.r)
			if got := m.backoff(tc.failures); got.Round(time.Millisecond) != tc.want {
				t.Errorf("backoff(%d) = %s, want %s", tc.failures, got, tc.want)
			}
		})
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(24 * time.Hour)}
	if got := testManager(t, ManagerConfig{}, 0).renewPoint(cert, time.Time{}); !got.Equal(start.Add(12 * time.Hour)) {
		t.Errorf("renew point with r=0: %s", got)
	}
	if got := testManager(t, ManagerConfig{}, 0.5).renewPoint(cert, time.Time{}); !got.Equal(start.Add(15 * time.Hour)) {
		t.Errorf("renew point with r=0.5: %s", got)
	}
}

func TestManagerConfigProblems(t *testing.T) {
	_, err := NewManager(ManagerConfig{Identities: []IdentitySpec{
		{Domain: "sports", Service: "api"},
		{Domain: "sports", Service: "api", Provider: "p.q", InstanceID: "i", Collector: stubCollector{}, KeyType: "dsa"},
	}, RenewAfter: 0.9, RenewBefore: 0.5}, ManagerDeps{Issuer: unusedIssuer{}, Sink: NewCache()})
	for _, want := range []string{"provider", "instance id is required", "collector is required", "key type", "configured twice", "renewal window"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewManager error %v, want it to mention %q", err, want)
		}
	}
}

func jwtWithPayload(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestK8sTokenInstance(t *testing.T) {
	uid, ns, err := k8sTokenInstance(jwtWithPayload(`{"kubernetes.io":{"namespace":"prod","pod":{"name":"p","uid":"1234"}}}`))
	if err != nil || uid != "1234" || ns != "prod" {
		t.Errorf("got %q %q %v", uid, ns, err)
	}
	for _, bad := range []string{"a.b", jwtWithPayload(`{"sub":"x"}`), "a.!!!.c"} {
		if _, _, err := k8sTokenInstance(bad); err == nil {
			t.Errorf("k8sTokenInstance(%q) succeeded", bad)
		}
	}
}

func TestNodePodTokenCollector(t *testing.T) {
	dir := t.TempDir()
	n := &NodeIdentities{Template: IdentitySpec{Provider: "Athenz-Mesh.K8s"}, TokenPath: filepath.Join(dir, PodUIDPlaceholder, "token")}
	spec, err := n.spec("sports.api")
	if err != nil || spec.Provider != "athenz-mesh.k8s" || !spec.InstanceFromK8sToken {
		t.Fatalf("spec %+v: %v", spec, err)
	}
	if _, err := spec.Collector.Collect(context.Background(), attestor.Target{}); err == nil || !strings.Contains(err.Error(), "no pod") {
		t.Errorf("collect with no pod: %v", err)
	}
	n.Record(Pod{UID: "old"}, "sports.api")
	n.Record(Pod{UID: "gone"}, "sports.api")
	n.Record(Pod{UID: "web"}, "sports.web")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old", "token"), []byte("tok-old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The newest pod ("gone") has no token any more; the next one's is used.
	tok, err := spec.Collector.Collect(context.Background(), attestor.Target{})
	if err != nil || tok != "tok-old" {
		t.Errorf("collect = %q, %v", tok, err)
	}
}

func TestKubeletPods(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.Header.Get("Authorization") != "Bearer sa-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"items":[{"metadata":{"uid":"ABC","name":"api-0","namespace":"sports","annotations":{"a":"b"}},"spec":{"serviceAccountName":"api"}}]}`))
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("sa-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k, err := NewKubeletPods(KubeletPodsConfig{URL: srv.URL, TokenFile: tokenFile, Client: srv.Client(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := k.PodByUID(context.Background(), "abc")
	if err != nil || p.Name != "api-0" || p.ServiceAccount != "api" || p.Annotations["a"] != "b" {
		t.Fatalf("pod %+v, %v", p, err)
	}
	if _, err := k.PodByUID(context.Background(), "abc"); err != nil || calls != 1 {
		t.Errorf("cached lookup: %v, %d calls", err, calls)
	}
	// A miss within MinInterval does not hit the kubelet again.
	if _, err := k.PodByUID(context.Background(), "other"); err == nil || calls != 1 {
		t.Errorf("miss: %v, %d calls", err, calls)
	}
	now = now.Add(2 * time.Second)
	if _, err := k.PodByUID(context.Background(), "other"); err == nil || calls != 2 {
		t.Errorf("miss after the interval: %v, %d calls", err, calls)
	}
}
