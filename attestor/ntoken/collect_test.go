package ntoken_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/ntoken"
)

func writeKey(t testing.TB, dir string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCollector(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeKey(t, dir, keys().api)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	target := attestor.Target{Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1"}
	tests := []struct {
		name    string
		cfg     ntoken.CollectorConfig
		target  attestor.Target
		wantErr bool
	}{
		{name: "service from the target", cfg: ntoken.CollectorConfig{KeyFile: keyFile, KeyID: "v1", Now: clock}, target: target},
		{name: "service configured", cfg: ntoken.CollectorConfig{KeyFile: keyFile, KeyID: "v1", Domain: "sports", Service: "api", Now: clock}, target: attestor.Target{}},
		{name: "configured service differs from the target", cfg: ntoken.CollectorConfig{KeyFile: keyFile, Domain: "sports", Service: "web", Now: clock}, target: target, wantErr: true},
		{name: "no service at all", cfg: ntoken.CollectorConfig{KeyFile: keyFile, Now: clock}, target: attestor.Target{}, wantErr: true},
		{name: "missing key file", cfg: ntoken.CollectorConfig{KeyFile: filepath.Join(dir, "none.pem"), Now: clock}, target: target, wantErr: true},
		{name: "not a key", cfg: ntoken.CollectorConfig{KeyFile: garbage, Now: clock}, target: target, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ntoken.NewCollector(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			data, err := c.Collect(context.Background(), tc.target)
			if tc.wantErr {
				if err == nil || data != "" {
					t.Fatalf("got %q, %v", data, err)
				}
				if strings.Contains(err.Error(), "PRIVATE") {
					t.Fatalf("error quotes the key file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, err := athenz.ParseNToken(data)
			if err != nil {
				t.Fatal(err)
			}
			if n.Principal() != "sports.api" || n.KeyID != "v1" || !n.IssueTime.Equal(now) || n.ExpiryTime.Sub(n.IssueTime) != ntoken.DefaultLifetime {
				t.Fatalf("token %+v", n)
			}
			r := &attestor.Request{Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1",
				AttestationData: data, PublicKey: keys().api.Public(), Now: now.Add(time.Minute)}
			if _, err := newVerifier(t).Verify(context.Background(), r); err != nil {
				t.Fatalf("verifier refuses the collected token: %v", err)
			}
		})
	}
}

func TestCollectorDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := ntoken.NewCollector(ntoken.CollectorConfig{KeyFile: writeKey(t, dir, keys().web), Hostname: "node-1.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.Collect(context.Background(), attestor.Target{Domain: "sports", Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := athenz.ParseNToken(data)
	if err != nil {
		t.Fatal(err)
	}
	if n.KeyID != ntoken.DefaultKeyID || n.Hostname != "node-1.example.com" {
		t.Fatalf("token %+v", n)
	}
	for name, cfg := range map[string]ntoken.CollectorConfig{
		"no key file":    {},
		"negative life":  {KeyFile: "k", Lifetime: -time.Second},
		"bad domain":     {KeyFile: "k", Domain: "-x"},
		"dotted service": {KeyFile: "k", Service: "a.b"},
	} {
		if _, err := ntoken.NewCollector(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
