package k8s_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

// TestCollector: the token file is read afresh on every call, as the kubelet rotates it.
func TestCollector(t *testing.T) {
	k := keys()
	p := filepath.Join(t.TempDir(), "athenz-mesh-token")
	c, err := k8s.NewCollector(k8s.CollectorConfig{TokenFile: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(context.Background(), attestor.Target{}); err == nil {
		t.Fatal("collected a missing file")
	}
	first := saToken(t, k.rsa, "rsa-1", nil)
	second := saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["jti"] = "rotated" })
	v := offlineVerifier(t, nil)
	for i, tok := range []string{first, second} {
		if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := c.Collect(context.Background(), attestor.Target{})
		if err != nil || got != tok {
			t.Fatalf("read %d: %q, %v", i, got, err)
		}
		if _, err := v.Verify(context.Background(), request(got)); err != nil {
			t.Fatalf("collected token %d refused: %v", i, err)
		}
	}
	if err := os.WriteFile(p, []byte("not a token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(context.Background(), attestor.Target{}); err == nil {
		t.Fatal("collected a file without a JWS")
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(context.Background(), attestor.Target{}); err == nil {
		t.Fatal("collected an empty file")
	}
}

func TestCollectorDefault(t *testing.T) {
	c, err := k8s.NewCollector(k8s.CollectorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The default path does not exist here; the error must name it.
	if _, err := c.Collect(context.Background(), attestor.Target{}); err == nil || !strings.Contains(err.Error(), k8s.DefaultTokenFile) {
		t.Fatalf("default path: %v", err)
	}
}
