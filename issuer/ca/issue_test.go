package ca

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"reflect"
	"sync"
	"testing"
	"time"
)

// leafRequest is a checked service request for key.
func leafRequest(t testing.TB, key crypto.Signer) IssueRequest {
	t.Helper()
	req, err := CheckServiceCSR(makeCSR(t, csrSpec{key: key, cn: "sports.prod.api", dns: []string{svcDNS}, uris: []string{svcSpiffe, svcInstance}}), svcIdentity())
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestIssueProfile(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	tests := []struct {
		name         string
		opts         InitOptions
		leaf         crypto.Signer
		wantSigAlg   x509.SignatureAlgorithm
		wantUsage    x509.KeyUsage
		wantChainLen int
	}{
		{"P-256 root, P-256 leaf", InitOptions{}, ks.p256[1], x509.ECDSAWithSHA256, x509.KeyUsageDigitalSignature, 0},
		{"P-384 root, P-384 leaf", InitOptions{KeyType: KeyTypeP384}, ks.p384, x509.ECDSAWithSHA384, x509.KeyUsageDigitalSignature, 0},
		{"RSA root, RSA leaf", InitOptions{KeyType: KeyTypeRSA2048}, ks.rsa2048, x509.SHA256WithRSA, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, 0},
		{"P-256 intermediate", InitOptions{Intermediate: true}, ks.p256[1], x509.ECDSAWithSHA256, x509.KeyUsageDigitalSignature, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := newDirCA(t, tt.opts, Config{})
			req := leafRequest(t, tt.leaf)
			is, err := ca.Issue(req)
			if err != nil {
				t.Fatal(err)
			}
			c := is.Certificate
			if err := verifyLeaf(ca.CA, is, testNow, x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("verify as server: %v", err)
			}
			if err := verifyLeaf(ca.CA, is, testNow, x509.ExtKeyUsageClientAuth); err != nil {
				t.Errorf("verify as client: %v", err)
			}
			if c.SignatureAlgorithm != tt.wantSigAlg {
				t.Errorf("signature algorithm = %v, want %v", c.SignatureAlgorithm, tt.wantSigAlg)
			}
			if c.KeyUsage != tt.wantUsage {
				t.Errorf("key usage = %v, want %v", c.KeyUsage, tt.wantUsage)
			}
			if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !reflect.DeepEqual(c.ExtKeyUsage, want) {
				t.Errorf("ext key usage = %v, want %v", c.ExtKeyUsage, want)
			}
			if !c.BasicConstraintsValid || c.IsCA {
				t.Errorf("basic constraints valid=%v CA=%v, want CA:false", c.BasicConstraintsValid, c.IsCA)
			}
			if !bytes.Equal(c.AuthorityKeyId, ca.Certificate().SubjectKeyId) {
				t.Errorf("AKID %x, want the CA's SKID %x", c.AuthorityKeyId, ca.Certificate().SubjectKeyId)
			}
			wantSKID, _ := keyID(tt.leaf.Public())
			if !bytes.Equal(c.SubjectKeyId, wantSKID) || len(c.SubjectKeyId) != 20 {
				t.Errorf("SKID %x, want %x", c.SubjectKeyId, wantSKID)
			}
			if c.Subject.String() != "CN=sports.prod.api" {
				t.Errorf("subject = %s", c.Subject)
			}
			if !reflect.DeepEqual(c.DNSNames, req.DNSNames) || !reflect.DeepEqual(c.URIs, req.URIs) || len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
				t.Errorf("SANs %v %v %v %v, want %v %v", c.DNSNames, c.URIs, c.EmailAddresses, c.IPAddresses, req.DNSNames, req.URIs)
			}
			if !c.NotBefore.Equal(testNow.Add(-DefaultBackdate)) || !c.NotAfter.Equal(testNow.Add(DefaultValidity)) {
				t.Errorf("validity %s – %s, want now-5m – now+24h", c.NotBefore, c.NotAfter)
			}
			if !bytes.Equal(is.DER, c.Raw) {
				t.Error("DER differs from Certificate.Raw")
			}
			if certs, err := ParseCertificatesPEM(is.CertPEM); err != nil || len(certs) != 1 || !certs[0].Equal(c) {
				t.Errorf("CertPEM does not hold the certificate alone: %v", err)
			}
			var chain []*x509.Certificate
			if len(is.ChainPEM) > 0 {
				chain, _ = ParseCertificatesPEM(is.ChainPEM)
			}
			if len(chain) != tt.wantChainLen {
				t.Errorf("chain has %d certificates, want %d", len(chain), tt.wantChainLen)
			}
			for _, cc := range chain {
				if cc.Equal(c) || cc.Equal(ca.Root()) {
					t.Error("chain holds the leaf or the root")
				}
			}
		})
	}
}

func TestIssueClientAuthOnly(t *testing.T) {
	t.Parallel()
	ca := mustSharedCA(t)
	req := leafRequest(t, testKeys().p256[1])
	req.ClientAuthOnly = true
	is, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(is.Certificate.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ext key usage = %v", is.Certificate.ExtKeyUsage)
	}
	if err := verifyLeaf(ca, is, testNow, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client-only certificate verifies as a server certificate")
	}
}

func TestIssueValidity(t *testing.T) {
	t.Parallel()
	// The CA expires 40 days after testNow, to exercise the chain cap.
	dir := t.TempDir()
	if err := Init(dir, InitOptions{Validity: 40 * 24 * time.Hour, Now: clockAt(testNow)}); err != nil {
		t.Fatal(err)
	}
	caExpiry := testNow.Add(40 * 24 * time.Hour)
	day := 24 * time.Hour
	tests := []struct {
		name      string
		cfg       Config
		validity  time.Duration
		cap       time.Duration
		at        time.Time
		wantAfter time.Time
		wantErr   error
	}{
		{"default", Config{}, 0, 0, testNow, testNow.Add(DefaultValidity), nil},
		{"configured default", Config{DefaultValidity: time.Hour}, 0, 0, testNow, testNow.Add(time.Hour), nil},
		{"requested", Config{}, 7 * day, 0, testNow, testNow.Add(7 * day), nil},
		{"requested below a second is truncated", Config{}, 90*time.Minute + 500*time.Millisecond, 0, testNow, testNow.Add(90 * time.Minute), nil},
		{"capped by the CA max", Config{}, 90 * day, 0, testNow, testNow.Add(DefaultMaxValidity), nil},
		{"capped by a configured max", Config{MaxValidity: 2 * day}, 7 * day, 0, testNow, testNow.Add(2 * day), nil},
		{"default capped by max", Config{MaxValidity: time.Hour}, 0, 0, testNow, testNow.Add(time.Hour), nil},
		{"capped by the request's cap", Config{}, 7 * day, 3 * day, testNow, testNow.Add(3 * day), nil},
		{"capped by the CA's expiry", Config{}, 30 * day, 0, testNow.Add(20 * day), caExpiry, nil},
		{"CA expired since load", Config{}, 0, 0, caExpiry.Add(time.Second), time.Time{}, ErrCAExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			files := DirConfig(dir)
			cfg.KeyFile, cfg.CertFile, cfg.RootsFile = files.KeyFile, files.CertFile, files.RootsFile
			now := testNow
			var mu sync.Mutex
			cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			ca, err := Load(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			now = tt.at
			mu.Unlock()
			req := leafRequest(t, testKeys().p256[1])
			req.Validity, req.MaxValidity = tt.validity, tt.cap
			is, err := ca.Issue(req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !is.Certificate.NotAfter.Equal(tt.wantAfter) {
				t.Errorf("NotAfter = %s, want %s", is.Certificate.NotAfter, tt.wantAfter)
			}
			if !is.Certificate.NotBefore.Equal(tt.at.Add(-DefaultBackdate)) {
				t.Errorf("NotBefore = %s, want %s", is.Certificate.NotBefore, tt.at.Add(-DefaultBackdate))
			}
		})
	}
}

func TestIssueBackdate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		backdate, want time.Duration
	}{{0, DefaultBackdate}, {time.Hour, time.Hour}, {-1, 0}} {
		ca := newDirCA(t, InitOptions{}, Config{Backdate: tt.backdate})
		is, err := ca.Issue(leafRequest(t, testKeys().p256[1]))
		if err != nil {
			t.Fatal(err)
		}
		if got := testNow.Sub(is.Certificate.NotBefore); got != tt.want {
			t.Errorf("Backdate %s: NotBefore is %s before now, want %s", tt.backdate, got, tt.want)
		}
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	t.Parallel()
	ca := mustSharedCA(t)
	good := leafRequest(t, testKeys().p256[1])
	tests := []struct {
		name string
		mod  func(*IssueRequest)
	}{
		{"no common name", func(r *IssueRequest) { r.CommonName = "" }},
		{"no key", func(r *IssueRequest) { r.PublicKey = nil }},
		{"RSA-1024 key", func(r *IssueRequest) { r.PublicKey = testKeys().rsa1024.Public() }},
		{"P-521 key", func(r *IssueRequest) { r.PublicKey = testKeys().p521.Public() }},
		{"negative validity", func(r *IssueRequest) { r.Validity = -time.Hour }},
		{"negative cap", func(r *IssueRequest) { r.MaxValidity = -time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := good
			tt.mod(&req)
			if is, err := ca.Issue(req); err == nil {
				t.Fatalf("issued %v", is.Certificate.Subject)
			}
		})
	}
}

func TestIssueSerials(t *testing.T) {
	t.Parallel()
	ca := mustSharedCA(t)
	req := leafRequest(t, testKeys().p256[1])
	const n = 2000
	seen := make(map[string]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				is, err := ca.Issue(req)
				if err != nil {
					errs <- err
					return
				}
				s := is.Certificate.SerialNumber
				if s.Sign() <= 0 || s.BitLen() > 159 {
					errs <- errors.New("serial " + s.String() + " is not positive with the top bit clear")
				}
				if s.String() != is.SerialDecimal || hex.EncodeToString(s.Bytes()) != is.SerialHex {
					errs <- errors.New("serial strings disagree with the certificate")
				}
				mu.Lock()
				if seen[is.SerialDecimal] {
					errs <- errors.New("duplicate serial " + is.SerialDecimal)
				}
				seen[is.SerialDecimal] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d distinct serials, want %d", len(seen), n)
	}
}

// countingReader returns a fixed byte pattern, for deterministic serials.
type countingReader struct {
	mu sync.Mutex
	b  byte
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		p[i] = r.b
	}
	r.b++
	return len(p), nil
}

func TestIssueInjectedRandom(t *testing.T) {
	t.Parallel()
	ca := newDirCA(t, InitOptions{}, Config{Rand: &countingReader{b: 0xff}})
	req := leafRequest(t, testKeys().p256[1])
	// 0xff...: top bit cleared gives 0x7fff...ff.
	is, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if want := "7f" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 19)); is.SerialHex != want {
		t.Errorf("serial %s, want %s", is.SerialHex, want)
	}
	// Then 0x00...: zero is skipped, 0x01... taken.
	is, err = ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if want := new(big.Int).SetBytes(bytes.Repeat([]byte{1}, 20)); is.Certificate.SerialNumber.Cmp(want) != 0 {
		t.Errorf("serial %x, want %x", is.Certificate.SerialNumber, want)
	}
	zeros := newDirCA(t, InitOptions{}, Config{Rand: zeroReader{}})
	if _, err := zeros.Issue(req); err == nil {
		t.Error("issued with an all-zero random source")
	}
	broken := newDirCA(t, InitOptions{}, Config{Rand: io.LimitReader(zeroReader{}, 0)})
	if _, err := broken.Issue(req); err == nil {
		t.Error("issued with a failing random source")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestKeyIDMatchesCryptoX509(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	for _, key := range []crypto.Signer{ks.p256[2], ks.p384, ks.rsa2048} {
		c := makeCert(t, caSpec("kid"), key, nil, nil)
		got, err := keyID(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, c.SubjectKeyId) {
			t.Errorf("%s: keyID %x, crypto/x509 SKID %x", DescribeKey(key.Public()), got, c.SubjectKeyId)
		}
	}
	h := sha256.Sum256([]byte("x"))
	if _, err := keyID(h); err == nil {
		t.Error("keyID accepted a non-key")
	}
}
