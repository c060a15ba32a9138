package ca

import (
	"testing"
)

// BenchmarkIssue signs P-256 leaf certificates with a P-256 and an RSA-2048 CA key: the
// cost of Issue alone (template, signature, crypto/x509's check of its own signature,
// parsing the result, PEM encoding).
func BenchmarkIssue(b *testing.B) {
	for _, bc := range []struct {
		name string
		kt   KeyType
	}{{"ca=p256/leaf=p256", KeyTypeP256}, {"ca=rsa2048/leaf=p256", KeyTypeRSA2048}} {
		b.Run(bc.name, func(b *testing.B) {
			ca := newDirCA(b, InitOptions{KeyType: bc.kt}, Config{})
			req := leafRequest(b, testKeys().p256[1])
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := ca.Issue(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIssueParallel is BenchmarkIssue on every core, as the issuer serves requests.
func BenchmarkIssueParallel(b *testing.B) {
	ca := newDirCA(b, InitOptions{}, Config{})
	req := leafRequest(b, testKeys().p256[1])
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ca.Issue(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCSRToCertificate is the whole per-request CA path for a SIA-like P-256 CSR:
// ParseCSR (including the self-signature check), CheckServiceCSR, Issue.
func BenchmarkCSRToCertificate(b *testing.B) {
	ca := newDirCA(b, InitOptions{}, Config{})
	csrPEM := pemCSR(csrDER(b, csrSpec{key: testKeys().p256[1], cn: "sports.prod.api",
		dns: []string{svcDNS, "api.sports-prod.svc.example.com"}, uris: []string{svcSpiffe, svcInstance}}))
	id := svcIdentity()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		csr, err := ParseCSR(csrPEM)
		if err != nil {
			b.Fatal(err)
		}
		req, err := CheckServiceCSR(csr, id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Issue(req); err != nil {
			b.Fatal(err)
		}
	}
}
