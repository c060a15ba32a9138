package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/sds"
	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

const (
	meshKubeIssuer = "https://kubernetes.default.svc.cluster.local"
	meshCluster    = "Kubernetes"
	meshPodUID     = "6f1c3a52-0d8e-4b43-9f0a-2c1e5d7b8a90"
	meshSpiffeID   = "spiffe://cluster.local/ns/sports/sa/api"
)

// meshDomains let the issuer's Istio provider launch every sports service.
var meshDomains = map[string]string{
	"sys.auth.yaml": `name: sys.auth
roles:
  - {name: "sys.auth:role.providers", roleMembers: [{memberName: athenz-mesh.istio}]}
policies:
  contents:
    domain: sys.auth
    policies:
      - name: "sys.auth:policy.providers"
        assertions: [{role: "sys.auth:role.providers", action: launch, resource: "sys.auth:instance"}]
`,
	"sports.yaml": `name: sports
roles:
  - {name: "sports:role.istio", roleMembers: [{memberName: athenz-mesh.istio}]}
policies:
  contents:
    domain: sports
    policies:
      - name: "sports:policy.launch"
        assertions: [{role: "sports:role.istio", action: launch, resource: "sports:service.*"}]
`,
}

// meshIssuer is a real issuer serving the ZTS API and Istio's CA API on 127.0.0.1:0,
// trusting one cluster ("Kubernetes") whose service-account signing key and JWKS file
// are made at test time.
type meshIssuer struct {
	ztsURL, istioAddr, caFile string
	clusterKey                crypto.Signer
	clock                     *fakeClock
}

func startMeshIssuer(t *testing.T, clock *fakeClock) *meshIssuer {
	t.Helper()
	dir := t.TempDir()
	mi := &meshIssuer{clock: clock}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mi.clusterKey = key
	jwk, err := athenz.JWKFromPublicKey(key.Public(), "cluster-key", true)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(athenz.JWKS{Keys: []athenz.JWK{jwk}})
	writeTestFile(t, filepath.Join(dir, "jwks.json"), string(jwks))
	for name, body := range meshDomains {
		writeTestFile(t, filepath.Join(dir, "domains", name), body)
	}
	cfgPath := filepath.Join(dir, "issuer.yaml")
	writeTestFile(t, cfgPath, "listen: {address: 127.0.0.1:0, metrics: \"off\"}\ndata_dir: "+filepath.Join(dir, "data")+
		"\nca: {create: true}\ndomains: {dir: "+filepath.Join(dir, "domains")+"}\n"+
		"istio:\n  listen: 127.0.0.1:0\n  mapping: {entries: [{namespace: sports, service_account: \"*\", domain: sports}]}\n"+
		"  clusters: [{id: "+meshCluster+", offline: {issuer: \""+meshKubeIssuer+"\", jwks_file: "+filepath.Join(dir, "jwks.json")+"}}]\n")
	cfg, err := issuer.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := issuer.New(cfg, issuer.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ln, iln := listenLocal(t), listenLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeIstio(ctx, ln, iln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer: %v", err)
		}
		srv.Close()
	})
	mi.ztsURL = "https://" + ln.Addr().String() + issuer.BasePath
	mi.istioAddr = iln.Addr().String()
	mi.caFile = filepath.Join(dir, "data", "ca", "ca.cert.pem")
	return mi
}

// saToken is a pod-bound projected service-account token as kube-apiserver signs it,
// valid for an hour from now on the test clock, signed by key (nil: the cluster's).
func (mi *meshIssuer) saToken(t *testing.T, key crypto.Signer, aud ...string) string {
	t.Helper()
	return mi.saTokenAt(t, key, mi.clock.Now(), aud...)
}

// saTokenAt is saToken issued at now.
func (mi *meshIssuer) saTokenAt(t *testing.T, key crypto.Signer, now time.Time, aud ...string) string {
	t.Helper()
	if key == nil {
		key = mi.clusterKey
	}
	if aud == nil {
		aud = []string{"istio-ca"}
	}
	payload, _ := json.Marshal(map[string]any{
		"aud": aud, "iss": meshKubeIssuer, "sub": "system:serviceaccount:sports:api",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      "sports",
			"pod":            map[string]any{"name": "api-7d9f8b6c5-x2x4q", "uid": meshPodUID},
			"serviceaccount": map[string]any{"name": "api", "uid": "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"},
		},
	})
	tok, err := athenz.SignJWS(key, athenz.JWSHeader{Kid: "cluster-key"}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testPods is the PodLookup of these tests: there is no Kubernetes API or kubelet here,
// so the pod the fake /proc names is answered from a map.
type testPods map[string]sds.Pod

func (p testPods) PodByUID(_ context.Context, uid string) (sds.Pod, error) {
	if pod, ok := p[uid]; ok {
		return pod, nil
	}
	return sds.Pod{}, fmt.Errorf("no pod %s", uid)
}

// meshAgent is a node-mode agent with node.istio_ca, whose one peer (this test process)
// is, through a fake /proc, in pod meshPodUID: service account sports/api.
type meshAgent struct {
	*agentUnderTest
	tokenFile string
}

func startMeshAgent(t *testing.T, mi *meshIssuer, clusterID, token string) *meshAgent {
	t.Helper()
	dir := shortTempDir(t)
	procRoot := filepath.Join(dir, "proc")
	fakeProcess(t, procRoot, os.Getpid(), meshPodUID)
	tokenFile := filepath.Join(dir, "pods", meshPodUID, "istio-token")
	writeTestFile(t, tokenFile, token)
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeTestFile(t, cfgPath, "issuer: {url: "+mi.ztsURL+", ca_file: "+mi.caFile+"}\n"+
		"mode: node\nsds: {socket: "+filepath.Join(dir, "agent.sock")+"}\nmetrics: {listen: \"off\"}\n"+
		"certificates: {retry_min: 1m, retry_max: 4m}\n"+
		"node:\n  mapping: {entries: [{namespace: sports, service_account: \"*\", domain: sports}]}\n"+
		"  proc_root: "+procRoot+"\n  token_path: "+filepath.Join(dir, "pods", sds.PodUIDPlaceholder, "istio-token")+"\n"+
		"  istio_ca: {address: "+mi.istioAddr+", cluster_id: "+clusterID+"}\n")
	cfg, err := loadAgentConfig(nil, agentFlags{config: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	pods := testPods{meshPodUID: {UID: meshPodUID, Namespace: "sports", Name: "api-7d9f8b6c5-x2x4q", ServiceAccount: "api"}}
	au := runTestAgent(t, cfg, mi.clock, pods)
	au.dir = dir
	return &meshAgent{agentUnderTest: au, tokenFile: tokenFile}
}

// runTestAgent builds and runs an agent until the test ends.
func runTestAgent(t *testing.T, cfg sds.AgentConfig, clock *fakeClock, pods sds.PodLookup) *agentUnderTest {
	t.Helper()
	logBuf := &lockedBuffer{}
	a, err := newAgent(cfg, agentDeps{
		log: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})), reg: prometheus.NewRegistry(),
		clock: clock, rand: func() float64 { return 0 }, pods: pods,
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
	return &agentUnderTest{a: a, clock: clock, log: logBuf}
}

// fakeProcess writes /proc/<pid>/stat and cgroup under root for a process of pod uid
// (cgroup v2, cgroupfs driver, containerd).
func fakeProcess(t *testing.T, root string, pid int, uid string) {
	t.Helper()
	fields := make([]string, 44)
	for i := range fields {
		fields[i] = "0"
	}
	fields[0], fields[19] = "S", "4242"
	dir := filepath.Join(root, strconv.Itoa(pid))
	writeTestFile(t, filepath.Join(dir, "stat"), fmt.Sprintf("%d (envoy) %s\n", pid, strings.Join(fields, " ")))
	writeTestFile(t, filepath.Join(dir, "cgroup"), "0::/kubepods/besteffort/pod"+uid+"/0123456789abcdef\n")
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestAgentIstioCAEndToEnd runs a real issuer serving Istio's CA API and a real node-mode
// agent with node.istio_ca. An SDS client on the agent's socket, in pod sports/api as the
// agent's /proc and pod lookup see it (a test PodLookup: there is no Kubernetes API here),
// asks for default and ROOTCA as Istio's proxy does: default carries exactly the Istio
// SPIFFE ID with the Athenz principal as CN, the chain holds no root, ROOTCA is the
// issuer's root. A renewal is a new CreateCertificate with the pod's fresh token (the
// first one has expired by then).
func TestAgentIstioCAEndToEnd(t *testing.T) {
	clock := newFakeClock()
	mi := startMeshIssuer(t, clock)
	ma := startMeshAgent(t, mi, meshCluster, mi.saToken(t, nil))

	conn, err := sdstest.Dial(ma.a.server.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A bound, so that a renewal that never comes fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := sdstest.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Subscribe("default", "ROOTCA"); err != nil {
		t.Fatal(err)
	}
	resp := recvUntil(t, client, "default", "ROOTCA")
	leaf1 := checkIstioSecrets(t, mi, resp)

	// Renewal: the first token expires long before the renewal point, so the new
	// certificate proves the agent sent the pod's token as the kubelet rotated it.
	clock.waitArmed(t) // asleep until the renewal point
	writeTestFile(t, ma.tokenFile, mi.saTokenAt(t, nil, clock.Now().Add(13*time.Hour)))
	clock.Advance(13 * time.Hour)
	resp = recvUntil(t, client)
	leaf2 := checkIstioSecrets(t, mi, resp)
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || samePublicKey(leaf1, leaf2) {
		t.Error("the renewal did not give a new certificate with a new key")
	}
	if st := ma.a.manager.Status(); len(st) != 1 || st[0].Name != "sports.api" || !st[0].Valid {
		t.Errorf("status %+v", st)
	}
}

// recvUntil receives and ACKs responses until one carries every name given (nil: the
// next response with a default secret).
func recvUntil(t *testing.T, client *sdstest.Client, names ...string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	if names == nil {
		names = []string{"default"}
	}
	for {
		r, err := client.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Ack(r); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(secretNames(t, r), ",")
		all := true
		for _, n := range names {
			all = all && strings.Contains(","+got+",", ","+n+",")
		}
		if all {
			return r
		}
	}
}

// checkIstioSecrets checks default and, when present, ROOTCA.
func checkIstioSecrets(t *testing.T, mi *meshIssuer, r *discoveryv3.DiscoveryResponse) *x509.Certificate {
	t.Helper()
	leaf := leafOfSecret(t, r, "default")
	if uris := uriStrings(leaf); len(uris) != 1 || uris[0] != meshSpiffeID || len(leaf.DNSNames) != 0 {
		t.Errorf("certificate URIs %v DNS %v, want only %s", uris, leaf.DNSNames, meshSpiffeID)
	}
	if leaf.Subject.CommonName != "sports.api" {
		t.Errorf("certificate CN %q, want the Athenz principal sports.api", leaf.Subject.CommonName)
	}
	caPEM := readFile(t, mi.caFile)
	for _, res := range r.GetResources() {
		s, err := sdstest.DecodeSecret(res)
		if err != nil {
			t.Fatal(err)
		}
		switch s.GetName() {
		case "default":
			for _, c := range pemCerts(t, s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) {
				if bytes.Equal(c.RawIssuer, c.RawSubject) {
					t.Errorf("the served chain holds the root %s; it belongs in ROOTCA", c.Subject)
				}
			}
		case "ROOTCA":
			roots := pemCerts(t, s.GetValidationContext().GetTrustedCa().GetInlineBytes())
			if len(roots) != 1 || !strings.Contains(caPEM, strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: roots[0].Raw})))) {
				t.Errorf("ROOTCA holds %d certificates, want the issuer's root", len(roots))
			}
		}
	}
	return leaf
}

func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// TestAgentIstioCARefused checks that a token the issuer refuses, a cluster it does not
// know, or a token without the Istio audience surface as a clear error in the agent's
// status, and that no certificate is served.
func TestAgentIstioCARefused(t *testing.T) {
	clock := newFakeClock()
	mi := startMeshIssuer(t, clock)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cluster, token string
		want                 []string
	}{
		{"token signed by another key", meshCluster, mi.saToken(t, otherKey), []string{"Unauthenticated", "service-account token refused"}},
		{"unknown cluster", "Elsewhere", mi.saToken(t, nil), []string{"Unauthenticated", `cluster "Elsewhere" is not configured`}},
		{"token without the istio-ca audience", meshCluster, mi.saToken(t, nil, "athenz-mesh"), []string{`has audiences ["athenz-mesh"], not "istio-ca"`}},
		{"not a token", meshCluster, "garbage", []string{"kubernetes token: not a compact JWS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The agents of earlier cases have stopped; forget the timers they set.
			for len(clock.armed) > 0 {
				<-clock.armed
			}
			ma := startMeshAgent(t, mi, tc.cluster, tc.token)
			conn, err := sdstest.Dial(ma.a.server.SocketPath())
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
			if err := client.Subscribe("default", "ROOTCA"); err != nil {
				t.Fatal(err)
			}
			clock.waitArmed(t) // the first attempt failed; the retry is scheduled
			st := ma.a.manager.Status()
			if len(st) != 1 || st[0].Valid || st[0].Failures == 0 {
				t.Fatalf("status %+v, want one identity that failed", st)
			}
			for _, w := range tc.want {
				if !strings.Contains(st[0].LastError, w) {
					t.Errorf("last error %q, want %q", st[0].LastError, w)
				}
			}
			if _, ok := ma.a.cache.Identity("sports.api"); ok {
				t.Error("a certificate is served after a refusal")
			}
			if err := ma.a.manager.Ready(); err == nil {
				t.Error("the agent is ready without a certificate")
			}
		})
	}
}
