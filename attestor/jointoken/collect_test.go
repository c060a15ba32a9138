package jointoken_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
)

func TestCollector(t *testing.T) {
	secret, _, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("TEST_JOIN_TOKEN", secret)
	tests := []struct {
		name      string
		cfg       jointoken.CollectorConfig
		wantErr   bool
		badConfig bool
		after     string // "kept", "gone", "empty"
	}{
		{name: "file, kept", cfg: jointoken.CollectorConfig{File: write("a", secret+"\r\n")}, after: "kept"},
		{name: "file, removed", cfg: jointoken.CollectorConfig{File: write("b", secret), AfterUse: attestor.AfterUseRemove}, after: "gone"},
		{name: "file, truncated", cfg: jointoken.CollectorConfig{File: write("c", secret), AfterUse: attestor.AfterUseTruncate}, after: "empty"},
		{name: "file with much white space", cfg: jointoken.CollectorConfig{File: write("d", "\n\n  "+secret+strings.Repeat(" ", 500))}, after: "kept"},
		{name: "env", cfg: jointoken.CollectorConfig{Env: "TEST_JOIN_TOKEN"}},
		{name: "not a join token", cfg: jointoken.CollectorConfig{File: write("e", "hunter2")}, wantErr: true},
		{name: "too large", cfg: jointoken.CollectorConfig{File: write("f", strings.Repeat("x", 1<<20))}, wantErr: true},
		{name: "missing", cfg: jointoken.CollectorConfig{File: filepath.Join(dir, "none")}, wantErr: true},
		{name: "unset env", cfg: jointoken.CollectorConfig{Env: "TEST_JOIN_TOKEN_UNSET"}, wantErr: true},
		{name: "neither", badConfig: true},
		{name: "both", cfg: jointoken.CollectorConfig{File: "a", Env: "B"}, badConfig: true},
		{name: "truncate env", cfg: jointoken.CollectorConfig{Env: "B", AfterUse: attestor.AfterUseTruncate}, badConfig: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := jointoken.NewCollector(tc.cfg)
			if tc.badConfig {
				if err == nil {
					t.Fatal("bad config accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Collect(context.Background(), attestor.Target{})
			if tc.wantErr {
				if err == nil || got != "" {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if err != nil || got != secret {
				t.Fatalf("got %q, %v", got, err)
			}
			if err := c.Used(context.Background()); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(tc.cfg.File)
			switch tc.after {
			case "kept":
				if err != nil || !strings.Contains(string(b), secret) {
					t.Fatalf("file after use: %q, %v", b, err)
				}
			case "gone":
				if !os.IsNotExist(err) {
					t.Fatalf("file after use: %v", err)
				}
			case "empty":
				if err != nil || len(b) != 0 {
					t.Fatalf("file after use: %q, %v", b, err)
				}
			}
		})
	}
}

// TestCollectVerify: what an operator creates and the agent collects, the issuer accepts
// once.
func TestCollectVerify(t *testing.T) {
	b := &fakeBurner{}
	secret := b.add(t, "sports", "api", time.Hour)
	p := filepath.Join(t.TempDir(), "join-token")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := jointoken.NewCollector(jointoken.CollectorConfig{File: p, AfterUse: attestor.AfterUseRemove})
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.Collect(context.Background(), attestor.Target{Domain: "sports", Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newVerifier(t, b).Verify(context.Background(), request(data)); err != nil {
		t.Fatal(err)
	}
	if err := c.Used(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(context.Background(), attestor.Target{}); err == nil {
		t.Fatal("collected a removed token")
	}
}
