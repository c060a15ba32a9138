package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// testKeys are generated once per test binary; RSA generation is slow.
type keySet struct {
	p256             []*ecdsa.PrivateKey
	p384, p224, p521 *ecdsa.PrivateKey
	rsa2048, rsa1024 *rsa.PrivateKey
	ed25519          ed25519.PrivateKey
}

var testKeys = sync.OnceValue(func() *keySet {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	ks := &keySet{}
	for range 4 {
		ks.p256 = append(ks.p256, must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)).(*ecdsa.PrivateKey))
	}
	ks.p384 = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)).(*ecdsa.PrivateKey)
	ks.p224 = must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader)).(*ecdsa.PrivateKey)
	ks.p521 = must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)).(*ecdsa.PrivateKey)
	ks.rsa2048 = must(rsa.GenerateKey(rand.Reader, 2048)).(*rsa.PrivateKey)
	ks.rsa1024 = must(rsa.GenerateKey(rand.Reader, 1024)).(*rsa.PrivateKey)
	_, ks.ed25519, _ = ed25519.GenerateKey(rand.Reader)
	return ks
})

// csrSpec describes a CSR to build.
type csrSpec struct {
	key               crypto.Signer // default: testKeys().p256[0]
	cn                string
	extraCNs          []string
	o, ou, c, l       []string
	dns, uris, emails []string
	ips               []net.IP
	ext               []pkix.Extension
	sigAlg            x509.SignatureAlgorithm
}

// csrDER builds the DER of a CSR.
func csrDER(t testing.TB, s csrSpec) []byte {
	t.Helper()
	key := s.key
	if key == nil {
		key = testKeys().p256[0]
	}
	tmpl := &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: s.cn, Organization: s.o, OrganizationalUnit: s.ou, Country: s.c, Locality: s.l},
		DNSNames:           s.dns,
		EmailAddresses:     s.emails,
		IPAddresses:        s.ips,
		ExtraExtensions:    s.ext,
		SignatureAlgorithm: s.sigAlg,
	}
	if len(s.extraCNs) > 0 {
		// pkix.Name lets ExtraNames replace the CN, so write the RDN sequence by hand.
		rdns := tmpl.Subject.ToRDNSequence()
		for _, cn := range s.extraCNs {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oidCommonName, Value: cn}})
		}
		raw, err := asn1.Marshal(rdns)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.RawSubject = raw
	}
	for _, u := range s.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("test URI %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

func pemCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// makeCSR returns a CSR parsed without ParseCSR's checks, for the check functions.
func makeCSR(t testing.TB, s csrSpec) *x509.CertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER(t, s))
	if err != nil {
		t.Fatalf("parse CSR: %v", err)
	}
	return csr
}

// wantCSRError checks that err is a *CSRError on field whose message contains want.
func wantCSRError(t *testing.T, err error, field, want string) {
	t.Helper()
	var ce *CSRError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *CSRError on %s", err, err, field)
	}
	if !errors.Is(err, ErrCSRRefused) {
		t.Errorf("error %v does not wrap ErrCSRRefused", err)
	}
	if ce.Field != field {
		t.Errorf("Field = %q, want %q (error: %v)", ce.Field, field, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// certSpec describes a CA-ish certificate for Load tests.
type certSpec struct {
	cn         string
	isCA       bool
	noBC       bool
	usage      x509.KeyUsage
	ext        []x509.ExtKeyUsage
	notBefore  time.Time
	notAfter   time.Time
	maxPathLen int
}

func caSpec(cn string) certSpec {
	return certSpec{cn: cn, isCA: true, usage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		notBefore: testNow.Add(-time.Hour), notAfter: testNow.AddDate(5, 0, 0), maxPathLen: -1}
}

// makeCert signs a certificate for key's public half with parentKey (self-signed when
// parent is nil).
func makeCert(t testing.TB, s certSpec, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              s.usage,
		ExtKeyUsage:           s.ext,
		BasicConstraintsValid: !s.noBC,
		IsCA:                  s.isCA,
		MaxPathLen:            s.maxPathLen,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("create certificate %q: %v", s.cn, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certPEM(certs ...*x509.Certificate) []byte {
	return encodeCerts(certs)
}

func keyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writeFile writes a test file with mode perm and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCA is a loaded CA and the directory it came from.
type testCA struct {
	*CA
	dir string
}

// newDirCA runs Init in a temporary directory and loads the result at testNow.
func newDirCA(t testing.TB, opts InitOptions, cfg Config) testCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if opts.Now == nil {
		opts.Now = clockAt(testNow)
	}
	if err := Init(dir, opts); err != nil {
		t.Fatalf("Init: %v", err)
	}
	files := DirConfig(dir)
	cfg.KeyFile, cfg.CertFile, cfg.ChainFile, cfg.RootsFile = files.KeyFile, files.CertFile, files.ChainFile, files.RootsFile
	if cfg.Now == nil {
		cfg.Now = clockAt(testNow)
	}
	ca, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return testCA{CA: ca, dir: dir}
}

// sharedCA is one P-256 root CA for tests that only issue.
var sharedCA = sync.OnceValues(func() (*CA, error) {
	dir, err := os.MkdirTemp("", "ca-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := Init(dir, InitOptions{Now: clockAt(testNow)}); err != nil {
		return nil, err
	}
	cfg := DirConfig(dir)
	cfg.Now = clockAt(testNow)
	return Load(cfg)
})

func mustSharedCA(t testing.TB) *CA {
	t.Helper()
	ca, err := sharedCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// verifyLeaf verifies an issued certificate against the CA's roots and chain.
func verifyLeaf(ca *CA, is *Issued, at time.Time, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	if len(is.ChainPEM) > 0 {
		certs, err := ParseCertificatesPEM(is.ChainPEM)
		if err != nil {
			return err
		}
		for _, c := range certs {
			inter.AddCert(c)
		}
	}
	_, err := is.Certificate.Verify(x509.VerifyOptions{Roots: ca.RootPool(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// sanExtension is a subjectAltName extension holding one GeneralName of the given tag.
func sanExtension(t testing.TB, tag int, content []byte) pkix.Extension {
	t.Helper()
	inner, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: tag == sanOtherName || tag == sanDirName, Bytes: content})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: inner})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidExtSubjectAltName, Value: seq}
}
