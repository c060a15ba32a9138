package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConfigProblemsNameTheFile checks loadConfigFile for every server subcommand: a
// config that decodes but does not validate is exit status 2 with the file and the kind
// named, a flag given on the command line is applied before validation, and no --config
// is a usage error.
func TestConfigProblemsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"issuer: invalid log level", []string{"issuer", "--config", write("issuer.yaml", "domains: {dir: /d}\nlog: {level: loud}\n"), "--check-config"},
			2, []string{"issuer.yaml: invalid issuer config", "log.level"}},
		{"issuer: the flag is validated too", []string{"issuer", "--config", write("issuer-ok.yaml", "domains: {dir: /d}\n"), "--listen", "nohostport", "--check-config"},
			2, []string{"issuer-ok.yaml: invalid issuer config", "nohostport"}},
		{"authz: invalid failure mode", []string{"authz", "--config", write("authz.yaml", "bundle: {file: /b}\ndecision: {failure_mode: maybe}\n"), "--check-config"},
			2, []string{"authz.yaml: invalid authz config", "failure_mode"}},
		{"agent: no identities", []string{"agent", "--config", write("agent.yaml", "issuer: {url: https://i:4443/zts/v1}\n"), "--check-config"},
			2, []string{"agent.yaml: invalid agent config", "identities"}},
		{"agent: no --config", []string{"agent", "--socket", "/tmp/x.sock"}, 2, []string{"--config is required: the agent config file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runCLI(t, tc.args...).expect(t, tc.code, tc.want...)
		})
	}
}
