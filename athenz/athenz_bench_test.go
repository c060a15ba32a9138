package athenz_test

import (
	"crypto"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func BenchmarkIsMemberName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		athenz.IsMemberName("media.prod.frontend-api*")
	}
}

func BenchmarkValidateDomainNameInvalid(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = athenz.ValidateDomainName("media.prod.front end")
	}
}

func BenchmarkCanonicalSignedPolicyData(b *testing.B) {
	var s athenz.SignedPolicyData
	s.PolicyData.Domain = "media.prod"
	for range 50 {
		p := athenz.SignedPolicy{Name: "media.prod:policy.p"}
		for range 10 {
			p.Assertions = append(p.Assertions, athenz.SignedAssertion{
				Role: "media.prod:role.writers", Resource: "media.prod:articles.*", Action: "write", Effect: athenz.EffectAllow,
			})
		}
		s.PolicyData.Policies = append(s.PolicyData.Policies, p)
	}
	s.Modified, _ = athenz.ParseTimestamp("2024-01-02T03:04:05.678Z")
	s.Expires = s.Modified
	b.ReportAllocs()
	for b.Loop() {
		if _, err := athenz.CanonicalSignedPolicyData(&s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignYBase64(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", testP256()}, {"rsa-2048", testRSA2048()}} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte("v=Z1;d=sports;r=readers;p=sports.api;a=1;t=1;e=2;k=0")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := athenz.SignYBase64(bc.key, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyYBase64(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", testP256()}, {"rsa-2048", testRSA2048()}} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte("v=Z1;d=sports;r=readers;p=sports.api;a=1;t=1;e=2;k=0")
			sig, err := athenz.SignYBase64(bc.key, data)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := athenz.VerifyYBase64(bc.key.Public(), data, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
