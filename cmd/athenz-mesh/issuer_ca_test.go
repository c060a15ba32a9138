package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssuerCALifecycle(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	runCLI(t, "issuer", "ca", "init", "--dir", dir, "--intermediate", "--common-name", "Test Root", "--validity", "2y").
		expect(t, 0, "created a CA in "+dir, "0600  ca.key.pem", "0644  ca.cert.pem", "0600  intermediate.key.pem",
			"0644  intermediate.cert.pem", "0644  roots.pem", "status: OK: signs with intermediate.cert.pem (ECDSA P-256)",
			`root "CN=Test Root"`, "root SHA-256 fingerprint: ")
	for name, want := range map[string]os.FileMode{"ca.key.pem": 0o600, "intermediate.key.pem": 0o600, "ca.cert.pem": 0o644, "roots.pem": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	runCLI(t, "issuer", "ca", "init", "--dir", dir).expect(t, 2, "ca.key.pem already exists; init never overwrites")

	r := runCLI(t, "issuer", "ca", "show", "--dir", dir)
	r.expect(t, 0, "ca.cert.pem:", "subject:     CN=Test Root", "issuer:      (self-signed)", "key:         ECDSA P-256",
		"CA:          yes, path length unlimited", "intermediate.cert.pem:", "issuer:      CN=Test Root",
		"yes, signs end-entity certificates only (path length 0)", "SHA-256:     ", "SHA-1:       ", "status: OK")
	if strings.Contains(r.stdout, "rotation:") {
		t.Errorf("show reports a rotation before any: %s", r.stdout)
	}

	runCLI(t, "issuer", "ca", "rotate", "--dir", dir, "--key-type", "p384", "--common-name", "Next Root").
		expect(t, 0, "prepared a new root", "0600  ca.next.key.pem", "0600  intermediate.next.key.pem", "2 trusted root(s)", "--promote")
	runCLI(t, "issuer", "ca", "show", "--dir", dir).expect(t, 0, "rotation: prepared", "roots.pem [2 of 2]:", "subject:     CN=Next Root")
	runCLI(t, "issuer", "ca", "rotate", "--dir", dir).expect(t, 2, "already prepared")
	runCLI(t, "issuer", "ca", "rotate", "--dir", dir, "--finish").expect(t, 2, "no promoted rotation")

	runCLI(t, "issuer", "ca", "rotate", "--dir", dir, "--promote").
		expect(t, 0, "promoted the new root", "0600  ca.prev.key.pem", "(ECDSA P-384)", `root "CN=Next Root"`, "--finish")
	runCLI(t, "issuer", "ca", "show", "--dir", dir).expect(t, 0, "rotation: promoted")

	runCLI(t, "issuer", "ca", "rotate", "--dir", dir, "--finish").expect(t, 0, "finished the rotation", "1 trusted root(s)")
	if _, err := os.Stat(filepath.Join(dir, "ca.prev.key.pem")); !os.IsNotExist(err) {
		t.Errorf("ca.prev.key.pem still exists after --finish: %v", err)
	}

	// A loosened key mode makes show answer no, with the fix.
	if err := os.Chmod(filepath.Join(dir, "intermediate.key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "issuer", "ca", "show", "--dir", dir).expect(t, 1, "status: cannot issue", "run: chmod 0600")
}

func TestIssuerCAShowFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	runCLI(t, "issuer", "ca", "init", "--dir", dir, "--key-type", "rsa2048").expect(t, 0, "(RSA 2048)")
	runCLI(t, "issuer", "ca", "show", filepath.Join(dir, "ca.cert.pem"), filepath.Join(dir, "roots.pem")).
		expect(t, 0, "ca.cert.pem:", "roots.pem:", "key:         RSA 2048", "days left)")
	runCLI(t, "issuer", "ca", "show", filepath.Join(dir, "ca.key.pem")).expect(t, 2, `"PRIVATE KEY"; want only CERTIFICATE blocks`)
	runCLI(t, "issuer", "ca", "show", filepath.Join(dir, "missing.pem")).expect(t, 2, "no such file")
	runCLI(t, "issuer", "ca", "show", "--dir", t.TempDir()).expect(t, 2, "holds no CA certificate")
}

func TestIssuerCAUsageErrors(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"issuer typo", []string{"issuer", "cq"}, []string{`unknown command "cq" for "athenz-mesh issuer"`}},
		{"ca typo", []string{"issuer", "ca", "int"}, []string{`unknown command "int" for "athenz-mesh issuer ca"`}},
		{"init without dir", []string{"issuer", "ca", "init"}, []string{"--dir is required"}},
		{"init with an argument", []string{"issuer", "ca", "init", "--dir", tmp, "extra"}, []string{"takes no arguments"}},
		{"unknown key type", []string{"issuer", "ca", "init", "--dir", tmp, "--key-type", "ed25519"}, []string{`--key-type "ed25519": want one of p256, p384, rsa2048, rsa4096`}},
		{"bad validity", []string{"issuer", "ca", "init", "--dir", tmp, "--validity", "ten years"}, []string{`--validity "ten years"`}},
		{"zero validity", []string{"issuer", "ca", "init", "--dir", tmp, "--validity", "0d"}, []string{"above zero"}},
		{"rotate without dir", []string{"issuer", "ca", "rotate", "--promote"}, []string{"--dir is required"}},
		{"promote and finish", []string{"issuer", "ca", "rotate", "--dir", tmp, "--promote", "--finish"}, []string{"separate steps"}},
		{"promote with generation flags", []string{"issuer", "ca", "rotate", "--dir", tmp, "--promote", "--key-type", "p384"}, []string{"--key-type applies to the first step only"}},
		{"show without anything", []string{"issuer", "ca", "show"}, []string{"give --dir DIR or one or more PEM files"}},
		{"show with both", []string{"issuer", "ca", "show", "--dir", tmp, "x.pem"}, []string{"not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tt.args...)
			r.expect(t, exitError, tt.wants...)
			if r.stdout != "" {
				t.Errorf("usage error wrote to stdout: %s", r.stdout)
			}
		})
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("failed commands left files: %v", entries)
	}
}

func TestParseValidity(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"10y": 3650 * day, "1y": 365 * day, "90d": 90 * day, "8760h": 8760 * time.Hour, "1h30m": 90 * time.Minute, "100y": 36500 * day,
	} {
		if got, err := parseValidity(in); err != nil || got != want {
			t.Errorf("parseValidity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "y", "-1y", "0y", "101y", "1.5y", "10", "1w", "-5m", "99999999999999d"} {
		if got, err := parseValidity(in); err == nil {
			t.Errorf("parseValidity(%q) = %v, want an error", in, got)
		}
	}
}
