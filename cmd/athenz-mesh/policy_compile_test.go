package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// writeKeyPair generates an ECDSA P-256 key and writes it as name.pem (private, SEC 1) and
// name.pub.pem (PKIX public) in dir.
func writeKeyPair(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

var compileSummary = regexp.MustCompile(`^wrote (\S+): 3 domains, (\d+) roles, (\d+) assertions, revision (\S+), (\d+) bytes, (.*)\n$`)

func TestPolicyCompileAndVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir, "bundle")
	_, otherPub := writeKeyPair(t, dir, "other")
	signed := filepath.Join(dir, "signed.tar.gz")
	unsigned := filepath.Join(dir, "unsigned.tar.gz")
	v1 := filepath.Join(dir, "v1.tar.gz")

	r := runCLI(t, "policy", "compile", "--out", signed, "--signing-key", priv, quickstartDomains)
	r.expect(t, 0)
	m := compileSummary.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("compile summary = %q, want %s", r.stderr, compileSummary)
	}
	if m[1] != signed || m[2] != "10" || m[3] != "12" || m[6] != `signed ES256 key id "default"` {
		t.Errorf("compile summary = %q: want 10 roles, 12 assertions, signed ES256", r.stderr)
	}
	if st, err := os.Stat(signed); err != nil || st.Size() == 0 {
		t.Fatalf("bundle not written: %v", err)
	}
	if r.stdout != "" {
		t.Errorf("compile wrote to stdout: %q", r.stdout)
	}
	revision := m[4]

	runCLI(t, "policy", "compile", "-o", unsigned, quickstartDomains).expect(t, 0, ", unsigned\n")
	runCLI(t, "policy", "compile", "--out", v1, "--signing-key", priv, "--key-id", "v1", "--revision", "release-7", quickstartDomains).
		expect(t, 0, "revision release-7,", `signed ES256 key id "v1"`)

	tampered := filepath.Join(dir, "tampered.tar.gz")
	b, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"signed bundle verifies", []string{"--key", pub, signed}, 0, []string{signed + `: verified (key id "default"): revision ` + revision + ", 3 domains\n"}},
		{"key id and revision", []string{"--key", pub, "--key-id", "v1", v1}, 0, []string{`verified (key id "v1"): revision release-7, 3 domains`}},
		{"wrong key id", []string{"--key", pub, v1}, 1, []string{"athenz-mesh: " + v1 + " failed verification: "}},
		{"wrong key", []string{"--key", otherPub, signed}, 1, []string{"athenz-mesh: " + signed + " failed verification: ", "signature"}},
		{"unsigned", []string{"--key", pub, unsigned}, 1, []string{"failed verification: ", "not signed"}},
		{"tampered", []string{"--key", pub, tampered}, 1, []string{"athenz-mesh: " + tampered + " failed verification: "}},
		{"missing --key", []string{signed}, 2, []string{"athenz-mesh: --key is required"}},
		{"private key given as --key", []string{"--key", priv, signed}, 2, []string{"athenz-mesh: " + priv + ": "}},
		{"missing key file", []string{"--key", filepath.Join(dir, "nope.pem"), signed}, 2, []string{"athenz-mesh: read key: "}},
		{"missing bundle", []string{"--key", pub, filepath.Join(dir, "nope.tar.gz")}, 2, []string{"athenz-mesh: open bundle: "}},
		{"two bundles", []string{"--key", pub, signed, unsigned}, 2, []string{"takes one argument, BUNDLE.tar.gz; got 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, append([]string{"policy", "verify"}, tt.args...)...)
			r.expect(t, tt.code, tt.wants...)
		})
	}
}

func TestPolicyCompileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir, "k")
	out := filepath.Join(dir, "b.tar.gz")
	badDomains := filepath.Join(dir, "bad")
	writeFiles(t, badDomains, map[string]string{
		"a.yaml": "name: sports\nroles:\n  - name: sports:role.readers\n    trust: 5\n",
		"b.yaml": "name: media\npolicies: []\n",
	})
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"no --out", []string{quickstartDomains}, []string{"athenz-mesh: --out is required"}},
		{"key id without key", []string{"--out", out, "--key-id", "v1", quickstartDomains}, []string{"athenz-mesh: --key-id needs --signing-key"}},
		{"public key as signing key", []string{"--out", out, "--signing-key", pub, quickstartDomains}, []string{"athenz-mesh: " + pub + ": bundle signing key: "}},
		{"missing signing key", []string{"--out", out, "--signing-key", priv + ".nope", quickstartDomains}, []string{"athenz-mesh: read signing key: "}},
		{"load problems", []string{"--out", out, badDomains}, []string{
			"athenz-mesh: load domains from " + badDomains + ": 2 problems:\n",
			filepath.Join(badDomains, "a.yaml") + ":4:12: ",
			filepath.Join(badDomains, "b.yaml") + ":2:11: ",
		}},
		{"missing directory", []string{"--out", out, filepath.Join(dir, "nope")}, []string{"athenz-mesh: load domains from "}},
		{"unwritable output", []string{"--out", filepath.Join(dir, "nope", "b.tar.gz"), quickstartDomains}, []string{"athenz-mesh: bundle: write " + filepath.Join(dir, "nope", "b.tar.gz") + ": "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, append([]string{"policy", "compile"}, tt.args...)...)
			r.expect(t, 2, tt.wants...)
		})
	}
	// The subtests run in parallel after this function returns; check what they left
	// behind once they are done.
	t.Cleanup(func() {
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a failed compile left %s behind (stat error %v)", out, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if matched, _ := filepath.Match(".b.tar.gz.tmp-*", e.Name()); matched {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	})
}
