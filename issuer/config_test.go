package issuer_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer"
)

func TestConfigFullExample(t *testing.T) {
	cfg, err := issuer.LoadConfig("testdata/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.MaxLongPoll != 2*time.Minute || cfg.Providers[1].K8s.Mapping.Rule.Separator != "--" || cfg.Keys.ZTS.ID != "zts.1" {
		t.Fatalf("decoded %+v", cfg)
	}
}

func TestConfigStrict(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want string
	}{
		"unknown key":      {"domains: {dir: d}\nlisten: {adress: x}\n", "adress"},
		"wrong type":       {"domains: {dir: d}\nlisten: {max_body_bytes: lots}\n", "lots"},
		"second document":  {"domains: {dir: d}\n---\nlog: {}\n", "second YAML document"},
		"no domains":       {"log: {level: info}\n", "domains.dir is required"},
		"bad level":        {"domains: {dir: d}\nlog: {level: loud}\n", "log.level"},
		"half a TLS pair":  {"domains: {dir: d}\ntls: {cert_file: c}\n", "tls.cert_file and tls.key_file"},
		"CA dir and files": {"domains: {dir: d}\nca: {dir: x, key_file: k, cert_file: c}\n", "either dir"},
		"bad provider":     {"domains: {dir: d}\nproviders: [{name: sys.auth.zts, attestor: join_token}, {name: a.b, attestor: magic}, {name: x.k, attestor: k8s}]\n", "built in"},
		"bad suffix":       {"domains: {dir: d}\ncertificates: {dns_suffixes: [\"a..b\"]}\n", "dns_suffixes"},
		"bad validity":     {"domains: {dir: d}\ncertificates: {default_validity: 48h, max_validity: 24h}\n", "longer than max_validity"},
		"bad issuer":       {"domains: {dir: d}\ntokens: {issuer: zts}\n", "tokens.issuer"},
		"bad key id":       {"domains: {dir: d}\nkeys: {zts: {id: \"a b\"}}\n", "keys.zts.id"},
		"negative":         {"domains: {dir: d}\nstore: {prune_interval: -1s}\n", "negative"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := issuer.DecodeConfig(strings.NewReader(tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			var ce *issuer.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a ConfigError mentioning %q", err, tc.want)
			}
		})
	}
	// Every problem is reported at once.
	cfg, _ := issuer.DecodeConfig(strings.NewReader("log: {level: loud, format: xml}\n"))
	var ce *issuer.ConfigError
	if err := cfg.Validate(); !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("problems: %v", err)
	}
}

func TestNewRefusesMissingCA(t *testing.T) {
	dir := t.TempDir()
	domains := filepath.Join(dir, "domains")
	if err := os.Mkdir(domains, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := issuer.New(issuer.Config{DataDir: dir, Domains: issuer.DomainsConfig{Dir: domains}}, issuer.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "issuer ca init") {
		t.Fatalf("error %v, want a hint to run issuer ca init", err)
	}
	// With a CA but a domain file that does not load, New fails and says which file.
	if err := os.WriteFile(filepath.Join(domains, "bad.json"), []byte(`{"name": "bad..name"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = issuer.New(issuer.Config{DataDir: dir, Domains: issuer.DomainsConfig{Dir: domains}, CA: issuer.CAConfig{Create: true}}, issuer.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("error %v, want the bad domain file named", err)
	}
}

func TestBadDomainReloadKeepsLastGood(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(filepath.Join(e.domainsDir, "broken.json"), []byte(`{"name": `), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.log.String(), "domain reload failed") {
		if time.Now().After(deadline) {
			t.Fatal("the failed reload was not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := e.call(t, e.client(nil), "GET", "/domain/sports/signed_policy_data", nil); r.status != 200 {
		t.Fatalf("after a failed reload: %d", r.status)
	}
}
