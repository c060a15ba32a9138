package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// TestDevEndToEnd runs `athenz-mesh dev` as a user would, the real binary in a
// subprocess, and uses every part from outside: Envoy's side of SDS and ext_authz (with
// the official go-control-plane types over the real sockets: no Envoy binary can run
// here), TLS between two SDS-delivered identities, the issuer's OAuth2 endpoint, a domain
// edit taking effect, and Athenz's own zts-svccert and zts-accesstoken.
func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := devBinary(t)
	dir := shortTempDir(t)
	sum, stop := startDev(t, bin, dir)

	conn, err := sdstest.Dial(sum.SDSSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, server, roots := devSDSIdentities(t, conn)

	t.Run("mTLS between two SDS identities", func(t *testing.T) {
		devMTLS(t, client, server, roots)
	})

	authzConn, err := grpc.NewClient(sum.AuthzGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer authzConn.Close()
	authzClient := authv3.NewAuthorizationClient(authzConn)

	t.Run("mTLS principals decided as the example domains say", func(t *testing.T) {
		for _, tc := range []struct {
			name, principal, resource string
			want                      codes.Code
		}{
			{"a partner reads final scores (trust)", "spiffe://media/sa/frontend", "scores.final", codes.OK},
			{"a partner may not read the live feed (DENY)", "spiffe://media/sa/frontend", "scores.live", codes.PermissionDenied},
			{"a reader reads scores", "spiffe://sports/sa/web", "scores.final", codes.OK},
			{"the api is not a reader", "spiffe://sports/sa/api", "scores.final", codes.PermissionDenied},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := devCheck(t, authzClient, tc.principal, "", "read", tc.resource); got != tc.want {
					t.Fatalf("Check = %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("bearer access token from the issuer", func(t *testing.T) {
		tok := devAccessToken(t, sum, server, "sports:domain")
		if got := devCheck(t, authzClient, "", tok, "read", "schedule"); got != codes.OK {
			t.Fatalf("token of sports.api reading the schedule (role internal): %v, want OK", got)
		}
		if got := devCheck(t, authzClient, "", tok, "write", "scores.final"); got != codes.PermissionDenied {
			t.Fatalf("token of sports.api writing scores: %v, want PermissionDenied", got)
		}
		if got := devCheck(t, authzClient, "", tok+"x", "read", "schedule"); got != codes.Unauthenticated {
			t.Fatalf("tampered token: %v, want Unauthenticated", got)
		}
	})

	t.Run("Athenz tools with the printed key", func(t *testing.T) {
		devAthenzTools(t, sum)
	})

	t.Run("a domain edit is enforced within 2 seconds", func(t *testing.T) {
		path := filepath.Join(sum.Domains, "media.yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(data), "      - memberName: media.frontend\n", "", 1)
		if edited == string(data) {
			t.Fatal("media.yaml no longer lists media.frontend in sports-feed; update the test")
		}
		if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		for devCheck(t, authzClient, "spiffe://media/sa/frontend", "", "read", "scores.final") != codes.PermissionDenied {
			if time.Since(written) > 2*time.Second {
				t.Fatal("media.frontend still allowed 2 s after it left media:role.sports-feed")
			}
			time.Sleep(50 * time.Millisecond) // polling the system under test, not waiting for time to pass
		}
		t.Logf("enforced %s after the edit", time.Since(written).Round(time.Millisecond))
	})

	t.Run("a restart keeps the CA and the records", func(t *testing.T) {
		before, err := os.ReadFile(sum.CACert)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		authzConn.Close()
		stop()
		again, _ := startDev(t, bin, dir)
		after, err := os.ReadFile(again.CACert)
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != string(after) {
			t.Fatal("the restarted dev mode has another CA")
		}
		conn2, err := sdstest.Dial(again.SDSSocket)
		if err != nil {
			t.Fatal(err)
		}
		defer conn2.Close()
		devSDSIdentities(t, conn2)
	})

}

// devBinary builds athenz-mesh as the Dockerfile and scripts/test.sh do (keep the flags
// in step), or uses ATHENZ_MESH_BIN.
func devBinary(t *testing.T) string {
	if bin := os.Getenv("ATHENZ_MESH_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "athenz-mesh")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startDev starts the binary's dev mode on free ports and waits for its summary line.
// stop sends SIGINT (Ctrl-C) and fails the test unless dev exits cleanly; it runs at
// cleanup when the test has not called it.
func startDev(t *testing.T, bin, dir string) (sum devSummary, stop func()) {
	cmd := exec.Command(bin, "dev", "--dir", dir, "--ports", "auto")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("dev did not stop cleanly on Ctrl-C: %v\n%s", err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Error("dev did not stop within 30 s of SIGINT")
			}
		})
	}
	t.Cleanup(stop)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "athenz-mesh dev is ready") {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("dev exited before it was ready: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev not ready after 2 minutes\n%s", stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	return sum, stop
}

// devSDSIdentities subscribes as Envoy does to default (media.frontend, the first
// identity), sports.api by its SPIFFE name, and ROOTCA, ACKs, and returns the two
// certificates and the roots.
func devSDSIdentities(t *testing.T, conn *grpc.ClientConn) (client, server tls.Certificate, roots *x509.CertPool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := sdstest.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"default", "spiffe://sports/sa/api", "ROOTCA"}
	if err := c.Subscribe(names...); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tlsv3.Secret{}
	for len(got) < len(names) {
		resp, err := c.Recv()
		if err != nil {
			t.Fatalf("SDS: %v (have %d of %v)", err, len(got), names)
		}
		for _, a := range resp.GetResources() {
			s, err := sdstest.DecodeSecret(a)
			if err != nil {
				t.Fatal(err)
			}
			got[s.GetName()] = s
		}
		if err := c.Ack(resp); err != nil {
			t.Fatal(err)
		}
	}
	client = secretCertificate(t, got["default"])
	server = secretCertificate(t, got["spiffe://sports/sa/api"])
	roots = x509.NewCertPool()
	if !roots.AppendCertsFromPEM(got["ROOTCA"].GetValidationContext().GetTrustedCa().GetInlineBytes()) {
		t.Fatal("ROOTCA has no trusted_ca certificates")
	}
	for name, want := range map[string]string{"default": "media.frontend", "server": "sports.api"} {
		cert := client
		if name == "server" {
			cert = server
		}
		if cert.Leaf.Subject.CommonName != want {
			t.Fatalf("%s identity is %q, want %q", name, cert.Leaf.Subject.CommonName, want)
		}
	}
	return client, server, roots
}

func secretCertificate(t *testing.T, s *tlsv3.Secret) tls.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	cert, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %s: %v", s.GetName(), err)
	}
	return cert
}

// devMTLS makes a TLS server with the server identity that requires a client
// certificate, and calls it with the client identity; both verify with the SDS roots.
func devMTLS(t *testing.T, client, server tls.Certificate, roots *x509.CertPool) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := athenz.PrincipalFromCertificate(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprint(w, id.Principal)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{client}, RootCAs: roots, ServerName: "api.sports.athenz.cloud", MinVersion: tls.VersionTLS13,
	}}}
	resp, err := hc.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "media.frontend" {
		t.Fatalf("server saw %d %q, want the client principal media.frontend", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != "sports.api" {
		t.Fatalf("client saw server %q, want sports.api", got)
	}
}

// devCheck sends a CheckRequest as Envoy's HTTP ext_authz filter builds it, with the
// route's context extensions naming the action and resource, and returns the status.
func devCheck(t *testing.T, c authv3.AuthorizationClient, principal, token, action, resource string) codes.Code {
	t.Helper()
	headers := map[string]string{":method": "GET", ":path": "/x", ":authority": "sports.example.com"}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/x", Host: "sports.example.com", Headers: headers,
		}},
		ContextExtensions: map[string]string{"athenz.domain": "sports", "athenz.action": action, "athenz.resource": resource},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return codes.Code(resp.GetStatus().GetCode())
}

// devAccessToken gets an access token from the issuer's /oauth2/token over mTLS with
// cert, as an application would.
func devAccessToken(t *testing.T, sum devSummary, cert tls.Certificate, scope string) string {
	t.Helper()
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(sum.CACert)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA bundle %s: %v", sum.CACert, err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12,
	}}}
	resp, err := hc.PostForm(sum.ZTSURL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		t.Fatalf("/oauth2/token: %d, %v", resp.StatusCode, err)
	}
	return out.AccessToken
}

// devAthenzTools runs Athenz's zts-svccert with the key dev printed, then
// zts-accesstoken with the certificate it got, and validates the token against the
// athenz.conf dev wrote.
func devAthenzTools(t *testing.T, sum devSummary) {
	svccert, accesstoken := os.Getenv("ATHENZ_ZTS_SVCCERT"), os.Getenv("ATHENZ_ZTS_ACCESSTOKEN")
	if svccert == "" || accesstoken == "" {
		t.Skip("ATHENZ_ZTS_SVCCERT and ATHENZ_ZTS_ACCESSTOKEN are not set: run scripts/test.sh, which builds the Athenz tools (v1.12.13)")
	}
	work := t.TempDir()
	certFile := filepath.Join(work, "frontend.cert.pem")
	runTool(t, work, svccert, "-zts", sum.ZTSURL, "-cacert", sum.CACert, "-private-key", sum.ServiceKey,
		"-key-version", sum.ServiceKeyID, "-domain", "media", "-service", "frontend", "-dns-domain", "athenz.cloud",
		"-cert-file", certFile)
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("zts-svccert wrote no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.Subject.CommonName != "media.frontend" {
		t.Fatalf("zts-svccert certificate CN %q: %v", cert.Subject.CommonName, err)
	}
	tok := strings.TrimSpace(runTool(t, work, accesstoken, "-zts", sum.ZTSURL, "-svc-key-file", sum.ServiceKey,
		"-svc-cert-file", certFile, "-svc-cacert-file", sum.CACert, "-domain", "media", "-roles", "sports-feed", "-token-only"))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("zts-accesstoken printed %q, not a JWT", tok)
	}
	out := runTool(t, work, accesstoken, "-validate", "-access-token", tok, "-conf", sum.AthenzConf)
	if !strings.Contains(out, "successfully validated") {
		t.Fatalf("zts-accesstoken -validate with dev's athenz.conf: %s", out)
	}
}

func runTool(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
