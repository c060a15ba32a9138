package ztstoken_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
)

func TestCollector(t *testing.T) {
	tok := mint(t, baseClaims(), testKeys().ec, "zts-ec")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("TEST_ZTS_REGISTER_TOKEN", tok)
	t.Setenv("TEST_ZTS_EMPTY", "")

	tests := []struct {
		name     string
		cfg      ztstoken.CollectorConfig
		wantErr  bool
		gone     bool // the file is removed after Used
		emptied  bool // the file is empty after Used
		badConfg bool
	}{
		{name: "file", cfg: ztstoken.CollectorConfig{File: write("a", "\n"+tok+"\n")}},
		{name: "env", cfg: ztstoken.CollectorConfig{Env: "TEST_ZTS_REGISTER_TOKEN"}},
		{name: "file removed after use", cfg: ztstoken.CollectorConfig{File: write("b", tok), AfterUse: attestor.AfterUseRemove}, gone: true},
		{name: "file truncated after use", cfg: ztstoken.CollectorConfig{File: write("c", tok), AfterUse: attestor.AfterUseTruncate}, emptied: true},
		{name: "missing file", cfg: ztstoken.CollectorConfig{File: filepath.Join(dir, "none")}, wantErr: true},
		{name: "empty file", cfg: ztstoken.CollectorConfig{File: write("d", " \n")}, wantErr: true},
		{name: "not a JWS", cfg: ztstoken.CollectorConfig{File: write("e", "v=S1;d=a;n=b;s=x")}, wantErr: true},
		{name: "unset env", cfg: ztstoken.CollectorConfig{Env: "TEST_ZTS_UNSET_VARIABLE"}, wantErr: true},
		{name: "empty env", cfg: ztstoken.CollectorConfig{Env: "TEST_ZTS_EMPTY"}, wantErr: true},
		{name: "neither", cfg: ztstoken.CollectorConfig{}, badConfg: true},
		{name: "both", cfg: ztstoken.CollectorConfig{File: "x", Env: "Y"}, badConfg: true},
		{name: "remove an env var", cfg: ztstoken.CollectorConfig{Env: "Y", AfterUse: attestor.AfterUseRemove}, badConfg: true},
		{name: "unknown after use", cfg: ztstoken.CollectorConfig{File: "x", AfterUse: "shred"}, badConfg: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ztstoken.NewCollector(tc.cfg)
			if tc.badConfg {
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
			if err != nil || got != tok {
				t.Fatalf("got %q, %v", got, err)
			}
			if err := c.Used(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.cfg.File == "" {
				return
			}
			b, err := os.ReadFile(tc.cfg.File)
			switch {
			case tc.gone:
				if !os.IsNotExist(err) {
					t.Fatalf("file still there: %v", err)
				}
				if err := c.Used(context.Background()); err != nil {
					t.Fatalf("second Used on a removed file: %v", err)
				}
			case tc.emptied:
				if err != nil || len(b) != 0 {
					t.Fatalf("file holds %q, %v", b, err)
				}
			default:
				if err != nil || len(b) == 0 {
					t.Fatalf("kept file holds %q, %v", b, err)
				}
			}
		})
	}
}

// TestCollectVerify: what the collector hands the agent, the verifier accepts.
func TestCollectVerify(t *testing.T) {
	tok := mint(t, baseClaims(), testKeys().ec, "zts-ec")
	t.Setenv("TEST_ZTS_REGISTER_TOKEN", tok)
	c, err := ztstoken.NewCollector(ztstoken.CollectorConfig{Env: "TEST_ZTS_REGISTER_TOKEN"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.Collect(context.Background(), attestor.Target{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newVerifier(t, newFakeOnce()).Verify(context.Background(), baseRequest(data)); err != nil {
		t.Fatal(err)
	}
}
