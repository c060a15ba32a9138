package ca

import (
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pki is a small hierarchy for Load tests: a root, an intermediate, their keys.
type pki struct {
	rootKey, interKey crypto.Signer
	root, inter       *x509.Certificate
}

func newPKI(t testing.TB) pki {
	ks := testKeys()
	root := makeCert(t, caSpec("test root"), ks.p256[0], nil, nil)
	interSpec := caSpec("test intermediate")
	interSpec.maxPathLen = 0
	inter := makeCert(t, interSpec, ks.p256[1], root, ks.p256[0])
	return pki{rootKey: ks.p256[0], interKey: ks.p256[1], root: root, inter: inter}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	p := newPKI(t)
	other := makeCert(t, caSpec("other root"), ks.p256[2], nil, nil)
	expiring := caSpec("expiring root")
	expiring.notAfter = testNow.Add(10 * 24 * time.Hour)
	expiringRoot := makeCert(t, expiring, ks.p256[2], nil, nil)
	expired := caSpec("expired root")
	expired.notAfter = testNow.Add(-time.Hour)
	expiredRoot := makeCert(t, expired, ks.p256[3], nil, nil)

	type files struct {
		key              crypto.Signer
		keyMode          os.FileMode
		cert             []*x509.Certificate
		chain, roots     []*x509.Certificate
		allowGroup       bool
		rawKey, rawRoots []byte
	}
	tests := []struct {
		name         string
		f            files
		wantErr      string
		wantWarn     string
		wantRoots    []*x509.Certificate
		wantChainLen int
	}{
		{name: "self-signed root", f: files{key: p.rootKey, cert: []*x509.Certificate{p.root}}, wantRoots: []*x509.Certificate{p.root}},
		{name: "intermediate, roots file", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter}, roots: []*x509.Certificate{p.root}},
			wantRoots: []*x509.Certificate{p.root}, wantChainLen: 1},
		{name: "intermediate, chain file ending with the root", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter}, chain: []*x509.Certificate{p.root}},
			wantRoots: []*x509.Certificate{p.root}, wantChainLen: 1},
		{name: "full-chain certificate file", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter, p.root}},
			wantRoots: []*x509.Certificate{p.root}, wantChainLen: 1},
		{name: "rotation: old and new roots published, active first", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter}, roots: []*x509.Certificate{other, p.root}},
			wantRoots: []*x509.Certificate{p.root, other}, wantChainLen: 1},
		{name: "group-readable key allowed", f: files{key: p.rootKey, keyMode: 0o640, allowGroup: true, cert: []*x509.Certificate{p.root}}, wantRoots: []*x509.Certificate{p.root}},
		{name: "read-only key", f: files{key: p.rootKey, keyMode: 0o400, cert: []*x509.Certificate{p.root}}, wantRoots: []*x509.Certificate{p.root}},
		{name: "root expiring soon warns", f: files{key: ks.p256[2], cert: []*x509.Certificate{expiringRoot}},
			wantRoots: []*x509.Certificate{expiringRoot}, wantWarn: `trusted root "CN=expiring root" expires on 2026-05-11T12:00:00Z, in 10 days`},
		{name: "intermediate expiring soon warns", f: files{key: ks.p256[3], cert: []*x509.Certificate{func() *x509.Certificate {
			s := caSpec("short intermediate")
			s.notAfter = testNow.Add(36 * time.Hour)
			return makeCert(t, s, ks.p256[3], p.root, p.rootKey)
		}()}, roots: []*x509.Certificate{p.root}}, wantRoots: []*x509.Certificate{p.root}, wantChainLen: 1,
			wantWarn: `CA certificate "CN=short intermediate" expires on 2026-05-03T00:00:00Z, in 36h0m0s: rotate it`},
		{name: "expired extra root warns", f: files{key: p.rootKey, cert: []*x509.Certificate{p.root}, roots: []*x509.Certificate{expiredRoot}},
			wantRoots: []*x509.Certificate{p.root, expiredRoot}, wantWarn: `trusted root "CN=expired root" expired on`},

		{name: "world-readable key", f: files{key: p.rootKey, keyMode: 0o644, cert: []*x509.Certificate{p.root}}, wantErr: "has mode 0644: a private key must not be readable by group or others; run: chmod 0600"},
		{name: "group-readable key", f: files{key: p.rootKey, keyMode: 0o640, cert: []*x509.Certificate{p.root}}, wantErr: "run: chmod 0600"},
		{name: "world-readable key with group allowed", f: files{key: p.rootKey, keyMode: 0o604, allowGroup: true, cert: []*x509.Certificate{p.root}}, wantErr: "run: chmod 0600"},
		{name: "key does not match", f: files{key: ks.p256[3], cert: []*x509.Certificate{p.root}}, wantErr: "the private key does not match"},
		{name: "not a key", f: files{rawKey: []byte("nope"), cert: []*x509.Certificate{p.root}}, wantErr: "no PEM private key block"},
		{name: "P-521 CA key", f: files{key: ks.p521, cert: []*x509.Certificate{makeCert(t, caSpec("p521"), ks.p521, nil, nil)}}, wantErr: "ECDSA curve P-521; want P-256 or P-384"},
		{name: "not a CA", f: files{key: ks.p256[3], cert: []*x509.Certificate{makeCert(t, certSpec{cn: "leaf", usage: x509.KeyUsageCertSign, notBefore: testNow.Add(-time.Hour), notAfter: testNow.Add(time.Hour), maxPathLen: -1}, ks.p256[3], nil, nil)}},
			wantErr: "is not a CA certificate"},
		{name: "no basic constraints", f: files{key: ks.p256[3], cert: []*x509.Certificate{makeCert(t, certSpec{cn: "v1", noBC: true, usage: x509.KeyUsageCertSign, notBefore: testNow.Add(-time.Hour), notAfter: testNow.Add(time.Hour)}, ks.p256[3], nil, nil)}},
			wantErr: "is not a CA certificate"},
		{name: "CA without keyCertSign", f: files{key: ks.p256[3], cert: []*x509.Certificate{makeCert(t, certSpec{cn: "nosign", isCA: true, usage: x509.KeyUsageDigitalSignature, notBefore: testNow.Add(-time.Hour), notAfter: testNow.Add(time.Hour), maxPathLen: -1}, ks.p256[3], nil, nil)}},
			wantErr: "lacks keyUsage keyCertSign"},
		{name: "CA restricted to serverAuth", f: files{key: ks.p256[3], cert: []*x509.Certificate{func() *x509.Certificate {
			s := caSpec("server only")
			s.ext = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			return makeCert(t, s, ks.p256[3], nil, nil)
		}()}}, wantErr: "restricts extended key usage"},
		{name: "expired CA", f: files{key: ks.p256[3], cert: []*x509.Certificate{expiredRoot}}, wantErr: `signing certificate "CN=expired root" expired on 2026-05-01T11:00:00Z`},
		{name: "CA not yet valid", f: files{key: ks.p256[3], cert: []*x509.Certificate{func() *x509.Certificate {
			s := caSpec("future")
			s.notBefore = testNow.Add(time.Hour)
			return makeCert(t, s, ks.p256[3], nil, nil)
		}()}}, wantErr: "is not valid until 2026-05-01T13:00:00Z"},
		{name: "intermediate without a root", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter}}, wantErr: "no root to verify the chain against"},
		{name: "intermediate with the wrong root", f: files{key: p.interKey, cert: []*x509.Certificate{p.inter}, roots: []*x509.Certificate{other}}, wantErr: "does not verify up to a trusted root"},
		{name: "non-CA in the roots file", f: files{key: p.rootKey, cert: []*x509.Certificate{p.root}, roots: []*x509.Certificate{
			makeCert(t, certSpec{cn: "leaf", notBefore: testNow.Add(-time.Hour), notAfter: testNow.Add(time.Hour), maxPathLen: -1}, ks.p256[3], nil, nil)}}, wantErr: `trusted root 1 ("CN=leaf") is not a CA`},
		{name: "key in the roots file", f: files{key: p.rootKey, cert: []*x509.Certificate{p.root}, rawRoots: append(certPEM(p.root), keyPEM(t, p.rootKey)...)}, wantErr: `PEM block 2 is "PRIVATE KEY"; want only CERTIFICATE blocks`},
		{name: "empty roots file", f: files{key: p.rootKey, cert: []*x509.Certificate{p.root}, rawRoots: []byte("\n")}, wantErr: "no PEM certificate found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := Config{Now: clockAt(testNow), AllowGroupReadableKey: tt.f.allowGroup}
			mode := tt.f.keyMode
			if mode == 0 {
				mode = 0o600
			}
			raw := tt.f.rawKey
			if raw == nil {
				raw = keyPEM(t, tt.f.key)
			}
			cfg.KeyFile = writeFile(t, dir, "key.pem", raw, mode)
			cfg.CertFile = writeFile(t, dir, "cert.pem", certPEM(tt.f.cert...), 0o644)
			if tt.f.chain != nil {
				cfg.ChainFile = writeFile(t, dir, "chain.pem", certPEM(tt.f.chain...), 0o644)
			}
			if tt.f.roots != nil {
				cfg.RootsFile = writeFile(t, dir, "roots.pem", certPEM(tt.f.roots...), 0o644)
			} else if tt.f.rawRoots != nil {
				cfg.RootsFile = writeFile(t, dir, "roots.pem", tt.f.rawRoots, 0o644)
			}
			ca, err := Load(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := ca.Roots(); !slices.EqualFunc(got, tt.wantRoots, (*x509.Certificate).Equal) {
				t.Errorf("roots = %v, want %v", subjects(got), subjects(tt.wantRoots))
			}
			if got, _ := ParseCertificatesPEM(ca.RootsPEM()); !slices.EqualFunc(got, tt.wantRoots, (*x509.Certificate).Equal) {
				t.Errorf("RootsPEM = %v, want %v", subjects(got), subjects(tt.wantRoots))
			}
			if len(ca.Chain()) != tt.wantChainLen {
				t.Errorf("chain = %v, want %d certificates", subjects(ca.Chain()), tt.wantChainLen)
			}
			if tt.wantChainLen == 0 && len(ca.ChainPEM()) != 0 {
				t.Errorf("ChainPEM = %q, want empty", ca.ChainPEM())
			}
			warnings := strings.Join(ca.Warnings(), "\n")
			if (tt.wantWarn == "") != (warnings == "") || !strings.Contains(warnings, tt.wantWarn) {
				t.Errorf("warnings = %q, want %q", warnings, tt.wantWarn)
			}
			is, err := ca.Issue(leafRequest(t, ks.p256[3]))
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyLeaf(ca, is, testNow, x509.ExtKeyUsageClientAuth); err != nil {
				t.Errorf("issued certificate does not verify: %v", err)
			}
		})
	}
}

func subjects(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.String())
	}
	return out
}

func TestLoadMissingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Load(Config{}); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("Load(zero) = %v", err)
	}
	if _, err := Load(Config{KeyFile: filepath.Join(dir, "nope.pem"), CertFile: "x"}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing key: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Config{KeyFile: filepath.Join(dir, "d"), CertFile: "x"}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as key: %v", err)
	}
	key := writeFile(t, dir, "key.pem", keyPEM(t, testKeys().p256[0]), 0o600)
	if _, err := Load(Config{KeyFile: key, CertFile: filepath.Join(dir, "nope.pem")}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing cert: %v", err)
	}
}

func TestLoadFollowsKeySymlink(t *testing.T) {
	t.Parallel()
	// Kubernetes secret volumes present files as symlinks into a ..data directory; the
	// mode that matters is the target's.
	ca := newDirCA(t, InitOptions{}, Config{})
	link := filepath.Join(t.TempDir(), "key.pem")
	if err := os.Symlink(filepath.Join(ca.dir, RootKeyFile), link); err != nil {
		t.Fatal(err)
	}
	cfg := DirConfig(ca.dir)
	cfg.KeyFile, cfg.Now = link, clockAt(testNow)
	if _, err := Load(cfg); err != nil {
		t.Fatalf("Load via symlink: %v", err)
	}
	if err := os.Chmod(filepath.Join(ca.dir, RootKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "chmod") {
		t.Errorf("Load via symlink to a 0644 key = %v, want the chmod advice", err)
	}
}
