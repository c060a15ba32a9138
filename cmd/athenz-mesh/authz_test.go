package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// authzFixture compiles the quickstart domains into a bundle and writes a config that
// reads it, with the gRPC service on a Unix socket and no TCP listeners.
func authzFixture(t *testing.T, extra string) (config, socket string) {
	t.Helper()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.tar.gz")
	runCLI(t, "policy", "compile", "--out", bundle, quickstartDomains).expect(t, 0)
	sockDir, err := os.MkdirTemp("", "azcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	socket = filepath.Join(sockDir, "authz.sock")
	config = filepath.Join(dir, "authz.yaml")
	body := "listen:\n  grpc: \"off\"\n  metrics: \"off\"\n  grpc_socket: " + socket + "\nbundle:\n  file: " + bundle + "\n" + extra
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, socket
}

func TestAuthzCheckConfig(t *testing.T) {
	config, _ := authzFixture(t, "")
	runCLI(t, "authz", "--config", config, "--check-config").expect(t, 0, "config OK")
	// A missing key file is found without serving.
	config, _ = authzFixture(t, "  verification_keys: [{file: /nonexistent/key.pem}]\n")
	runCLI(t, "authz", "--config", config, "--check-config").expect(t, 2, "bundle verification key", "no such file")
}

func TestAuthzConfigErrors(t *testing.T) {
	config, _ := authzFixture(t, "decision:\n  dry_runn: true\n  cache: {size: -1}\n")
	runCLI(t, "authz", "--config", config, "--check-config").expect(t, 2, "line 8", "dry_runn")

	config, _ = authzFixture(t, "decision:\n  failure_mode: sometimes\n  status_on_error: 200\n")
	runCLI(t, "authz", "--config", config, "--check-config").expect(t, 2, "2 problems", "decision.failure_mode", "decision.status_on_error")

	runCLI(t, "authz").expect(t, 2, "--config is required")
	runCLI(t, "authz", "--config", filepath.Join(t.TempDir(), "missing.yaml")).expect(t, 2, "no such file")
	runCLI(t, "authz", "--config", config, "extra").expect(t, 2, "takes no arguments")

	config, _ = authzFixture(t, "")
	// Flags override the file: turning every check listener off is refused.
	runCLI(t, "authz", "--config", config, "--grpc-socket", "", "--check-config").expect(t, 2, "nothing would serve checks")
}

func TestAuthzServesUntilStopped(t *testing.T) {
	config, socket := authzFixture(t, "")
	cmd := newAuthzCmd()
	if err := cmd.Flags().Parse([]string{"--config", config}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runAuthz(ctx, cmd, &stdout, &stderr, authzFlags{config: config}) }()

	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(wctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch: %v", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 401 {
		t.Errorf("a request without credentials: %v, want a 401 denial", resp)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runAuthz: %v", err)
	}
	if !strings.Contains(stderr.String(), `"msg":"authz server stopped"`) {
		t.Errorf("log lacks the stop: %s", stderr.String())
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}
