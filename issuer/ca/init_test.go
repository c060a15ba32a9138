package ca

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileModes returns the permission bits of every file in dir.
func fileModes(t *testing.T, dir string) map[string]os.FileMode {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		modes[e.Name()] = fi.Mode().Perm()
	}
	return modes
}

func TestInitLayouts(t *testing.T) {
	// Not parallel: it sets the process umask to check that modes do not depend on it.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tests := []struct {
		name      string
		opts      InitOptions
		wantFiles map[string]os.FileMode
		signer    string
	}{
		{"root only", InitOptions{}, map[string]os.FileMode{RootKeyFile: 0o600, RootCertFile: 0o644, RootsBundleFile: 0o644}, RootCertFile},
		{"root and intermediate", InitOptions{Intermediate: true, KeyType: KeyTypeP384, CommonName: "Example Root", IntermediateCommonName: "Example Issuing CA", Validity: 365 * 24 * time.Hour},
			map[string]os.FileMode{RootKeyFile: 0o600, RootCertFile: 0o644, IntermediateKeyFile: 0o600, IntermediateCertFile: 0o644, RootsBundleFile: 0o644}, IntermediateCertFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "ca")
			tt.opts.Now = clockAt(testNow)
			if err := Init(dir, tt.opts); err != nil {
				t.Fatal(err)
			}
			if got := fileModes(t, dir); !equalModes(got, tt.wantFiles) {
				t.Errorf("files = %v, want %v", got, tt.wantFiles)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("directory mode = %v (%v), want 0700", fi.Mode().Perm(), err)
			}
			cfg := DirConfig(dir)
			if filepath.Base(cfg.CertFile) != tt.signer {
				t.Errorf("DirConfig signs with %s, want %s", cfg.CertFile, tt.signer)
			}
			cfg.Now = clockAt(testNow)
			ca, err := Load(cfg)
			if err != nil {
				t.Fatalf("Load(DirConfig): %v", err)
			}
			if len(ca.Warnings()) > 0 {
				t.Errorf("warnings on a new CA: %v", ca.Warnings())
			}
			root := ca.Root()
			validity := tt.opts.Validity
			if validity == 0 {
				validity = DefaultCAValidity
			}
			if !root.NotBefore.Equal(testNow.Add(-time.Hour)) || !root.NotAfter.Equal(testNow.Add(validity)) {
				t.Errorf("root validity %s – %s", root.NotBefore, root.NotAfter)
			}
			if root.MaxPathLen != -1 || root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(root.SubjectKeyId) == 0 {
				t.Errorf("root profile: pathlen %d, usage %v, SKID %x", root.MaxPathLen, root.KeyUsage, root.SubjectKeyId)
			}
			wantCN := tt.opts.CommonName
			if wantCN == "" {
				wantCN = fmt.Sprintf("athenz-mesh root CA 2026-05-01 %x", root.SubjectKeyId[:3])
			}
			if root.Subject.CommonName != wantCN {
				t.Errorf("root CN = %q, want %q", root.Subject.CommonName, wantCN)
			}
			if tt.opts.Intermediate {
				inter := ca.Certificate()
				if inter.Subject.CommonName != tt.opts.IntermediateCommonName || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
					t.Errorf("intermediate %q pathlen %d zero=%v", inter.Subject.CommonName, inter.MaxPathLen, inter.MaxPathLenZero)
				}
				if DescribeKey(inter.PublicKey) != "ECDSA P-384" || inter.SignatureAlgorithm != x509.ECDSAWithSHA384 {
					t.Errorf("intermediate key %s signed with %v", DescribeKey(inter.PublicKey), inter.SignatureAlgorithm)
				}
			}
			bundle, _ := os.ReadFile(filepath.Join(dir, RootsBundleFile))
			rootPEM, _ := os.ReadFile(filepath.Join(dir, RootCertFile))
			if !bytes.Equal(bundle, rootPEM) {
				t.Error("roots.pem is not the root certificate")
			}
		})
	}
}

func equalModes(a, b map[string]os.FileMode) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestInitNeverOverwrites(t *testing.T) {
	t.Parallel()
	for _, existing := range []string{RootKeyFile, RootCertFile, IntermediateKeyFile, IntermediateCertFile, RootsBundleFile} {
		t.Run(existing, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, existing, []byte("precious"), 0o600)
			err := Init(dir, InitOptions{Intermediate: true})
			if err == nil || !strings.Contains(err.Error(), existing+" already exists; init never overwrites") {
				t.Fatalf("Init = %v, want a refusal naming %s", err, existing)
			}
			if got := fileModes(t, dir); len(got) != 1 {
				t.Errorf("Init left files behind: %v", got)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, existing)); string(b) != "precious" {
				t.Errorf("%s was changed", existing)
			}
		})
	}
	t.Run("second init", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := Init(dir, InitOptions{}); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(dir, RootKeyFile))
		if err := Init(dir, InitOptions{}); err == nil {
			t.Fatal("second Init succeeded")
		}
		if again, _ := os.ReadFile(filepath.Join(dir, RootKeyFile)); !bytes.Equal(key, again) {
			t.Error("second Init changed the key")
		}
	})
}

func TestNewFilesExclusiveAndRollback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "b.pem", []byte("keep"), 0o644)
	var w newFiles
	if err := w.write(filepath.Join(dir, "a.key.pem"), []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := w.write(filepath.Join(dir, "b.pem"), []byte("b"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("write over an existing file = %v", err)
	}
	w.rollback()
	if got := fileModes(t, dir); len(got) != 1 || got["b.pem"] == 0 {
		t.Errorf("after rollback: %v, want only b.pem", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.pem")); string(b) != "keep" {
		t.Error("existing file changed")
	}
}

func TestKeyTypes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kt   KeyType
		want string
	}{{"", "ECDSA P-256"}, {KeyTypeP256, "ECDSA P-256"}, {KeyTypeP384, "ECDSA P-384"}, {KeyTypeRSA2048, "RSA 2048"}} {
		k, err := tt.kt.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if got := DescribeKey(k.Public()); got != tt.want {
			t.Errorf("%q generates %s, want %s", tt.kt, got, tt.want)
		}
	}
	if _, err := KeyType("ed25519").GenerateKey(); err == nil || !strings.Contains(err.Error(), "want one of [p256 p384 rsa2048 rsa4096]") {
		t.Errorf("unknown key type: %v", err)
	}
	if err := Init(t.TempDir(), InitOptions{KeyType: "dsa"}); err == nil {
		t.Error("Init with an unknown key type succeeded")
	}
}
