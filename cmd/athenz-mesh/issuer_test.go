package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
)

// issuerFixture writes a config serving the quickstart domains, with a development CA
// created in the data directory on first start.
func issuerFixture(t *testing.T, extra string) (config, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	config = filepath.Join(dir, "issuer.yaml")
	body := "listen:\n  address: 127.0.0.1:0\n  metrics: \"off\"\ndata_dir: " + dataDir +
		"\nca:\n  create: true\ndomains:\n  dir: " + quickstartDomains + "\n" + extra
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, dataDir
}

func TestIssuerCheckConfig(t *testing.T) {
	config, dataDir := issuerFixture(t, "")
	runCLI(t, "issuer", "--config", config, "--check-config").expect(t, 0, "config OK")
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("--check-config created the data directory: %v", err)
	}
	config, _ = issuerFixture(t, "tokens:\n  isuer: x\nlog: {level: loud}\n")
	runCLI(t, "issuer", "--config", config, "--check-config").expect(t, 2, "isuer")
	config, _ = issuerFixture(t, "log: {level: loud, format: xml}\n")
	runCLI(t, "issuer", "--config", config, "--check-config").expect(t, 2, "log.level", "log.format")
	runCLI(t, "issuer", "--listen", "127.0.0.1:1").expect(t, 2, "--config is required")
	runCLI(t, "issuer", "--config", filepath.Join(t.TempDir(), "missing.yaml")).expect(t, 2, "no such file")
	runCLI(t, "issuer", "serve").expect(t, 2, "unknown command")
	runCLI(t, "issuer").expect(t, 0, "join-token", "ca")
}

// lockedBuffer is a goroutine-safe writer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestIssuerServesUntilStopped(t *testing.T) {
	config, dataDir := issuerFixture(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runIssuer(ctx, nil, &stdout, &stderr, issuerFlags{config: config}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "issuer listening") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the issuer did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, f := range []string{"ca/ca.cert.pem", "zts.key.pem", "zms.key.pem", "bundle.pub.pem", "issuer.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("data directory: %v", err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v\n%s", err, stderr.String())
	}
}

func TestIssuerJoinTokenCreate(t *testing.T) {
	config, _ := issuerFixture(t, "")
	r := runCLI(t, "issuer", "join-token", "create", "--config", config, "--domain", "Sports", "--service", "api", "--ttl", "10m")
	r.expect(t, 0, "join token for sports.api")
	if err := jointoken.Check(strings.TrimSpace(r.stdout)); err != nil {
		t.Fatalf("printed token %q: %v", r.stdout, err)
	}
	runCLI(t, "issuer", "join-token", "create", "--config", config, "--domain", "sports", "--service", "a.b").expect(t, 2, "--service")
	runCLI(t, "issuer", "join-token", "create", "--domain", "sports", "--service", "api").expect(t, 2, "--config is required")
	runCLI(t, "issuer", "join-token", "create", "--config", config, "--domain", "sports", "--service", "api", "--ttl", "-1m").expect(t, 2, "--ttl")
}
