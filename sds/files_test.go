package sds

import (
	"crypto/rsa"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

func TestFilesLayoutAndModes(t *testing.T) {
	ca, err := sdstest.NewCA("files test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		keyMode fs.FileMode
		want    fs.FileMode
	}{
		{"default 0600", 0, 0o600},
		{"group readable 0440", 0o440, 0o440},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := NewFiles(FilesConfig{Dir: dir, KeyMode: tc.keyMode})
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Issue("sports.api", "spiffe://sports/sa/api", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cred := &Credential{Chain: leaf.Chain, Key: leaf.Key}
			if err := f.WriteIdentity("sports", "api", cred); err != nil {
				t.Fatal(err)
			}
			if err := f.WriteCA([]*x509.Certificate{ca.Cert}); err != nil {
				t.Fatal(err)
			}
			if err := f.WriteRoleCert("sports", "readers", cred); err != nil {
				t.Fatal(err)
			}
			wantModes := map[string]fs.FileMode{
				"keys/sports.api.key.pem":            tc.want,
				"certs/sports.api.cert.pem":          0o644,
				"certs/ca.cert.pem":                  0o644,
				"certs/sports:role.readers.cert.pem": 0o644,
			}
			for p, m := range wantModes {
				fi, err := os.Stat(filepath.Join(dir, p))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != m {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), m)
				}
			}
			key, _ := os.ReadFile(f.KeyPath("sports", "api"))
			if !strings.HasPrefix(string(key), "-----BEGIN EC PRIVATE KEY-----") {
				t.Errorf("key file is not SIA's EC PRIVATE KEY PEM")
			}
			got, err := f.LoadIdentity("sports", "api")
			if err != nil || got.Chain[0].SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
				t.Fatalf("LoadIdentity: %v", err)
			}
			if _, err := f.LoadIdentity("sports", "web"); err == nil {
				t.Error("LoadIdentity of a missing identity succeeded")
			}
			// Rotation replaces the files in place; no temporary file is left.
			leaf2, _ := ca.Issue("sports.api", "", time.Hour)
			if err := f.WriteIdentity("sports", "api", &Credential{Chain: leaf2.Chain, Key: leaf2.Key}); err != nil {
				t.Fatal(err)
			}
			if got, _ := f.LoadIdentity("sports", "api"); got == nil || got.Chain[0].SerialNumber.Cmp(leaf2.Cert.SerialNumber) != 0 {
				t.Error("the rotated certificate was not written")
			}
			for _, sub := range []string{"keys", "certs"} {
				entries, _ := os.ReadDir(filepath.Join(dir, sub))
				for _, e := range entries {
					if strings.Contains(e.Name(), ".tmp-") {
						t.Errorf("leftover %s", e.Name())
					}
				}
			}
		})
	}
}

func TestFilesRSAKeyIsPKCS1(t *testing.T) {
	key, err := newKey(KeyRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pemText, err := encodeKeyPEM(&Credential{Key: key})
	if err != nil || !strings.HasPrefix(string(pemText), "-----BEGIN RSA PRIVATE KEY-----") || key.(*rsa.PrivateKey).N.BitLen() != 2048 {
		t.Errorf("RSA key PEM: %v", err)
	}
}

func TestKeyFileModes(t *testing.T) {
	for _, tc := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o440, true}, {0o640, true},
		{0o644, false}, {0o604, false}, {0o700, false}, {0o040, false}, {fs.ModeSetuid | 0o600, false},
	} {
		if err := CheckKeyFileMode(tc.mode); (err == nil) != tc.ok {
			t.Errorf("CheckKeyFileMode(%v) = %v, want ok %v", tc.mode, err, tc.ok)
		}
	}
	if _, err := NewFiles(FilesConfig{Dir: t.TempDir(), KeyMode: 0o644}); err == nil {
		t.Error("NewFiles accepted a world-readable key mode")
	}
}

func TestWriteAtomicKeepsOldFileOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pem")
	if err := writeAtomic(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A destination that is a non-empty directory cannot be replaced by rename.
	bad := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(bad, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(bad, []byte("new"), 0o600); err == nil {
		t.Fatal("writeAtomic over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary file %s after a failed write", e.Name())
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("file = %q", b)
	}
}
