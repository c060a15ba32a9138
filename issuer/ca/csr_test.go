package ca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCSRAccepts(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	basicCAFalse := pkix.Extension{Id: oidExtBasicConstraints, Value: mustMarshal(t, struct{}{})}
	digitalSig := pkix.Extension{Id: oidExtKeyUsage, Value: mustMarshal(t, asn1.BitString{Bytes: []byte{0xa0}, BitLength: 3})}
	ekuServerClient := pkix.Extension{Id: oidExtExtendedKeyUsage, Value: mustMarshal(t, []asn1.ObjectIdentifier{oidEKUServerAuth, oidEKUClientAuth})}
	skid := pkix.Extension{Id: oidExtSubjectKeyID, Value: mustMarshal(t, []byte{1, 2, 3})}
	tests := []struct {
		name string
		spec csrSpec
	}{
		{"P-256", csrSpec{cn: "sports.api", dns: []string{"api.sports.athenz.cloud"}}},
		{"P-384", csrSpec{key: ks.p384, cn: "sports.api"}},
		{"RSA-2048", csrSpec{key: ks.rsa2048, cn: "sports.api"}},
		{"RSA-PSS signature", csrSpec{key: ks.rsa2048, cn: "sports.api", sigAlg: x509.SHA256WithRSAPSS}},
		{"ECDSA SHA-384 signature", csrSpec{cn: "sports.api", sigAlg: x509.ECDSAWithSHA384}},
		{"no subject at all", csrSpec{uris: []string{"spiffe://cluster.local/ns/default/sa/api"}}},
		{"openssl v3_req extensions", csrSpec{cn: "sports.api", ext: []pkix.Extension{basicCAFalse, digitalSig, ekuServerClient, skid}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr, err := ParseCSR(pemCSR(csrDER(t, tt.spec)))
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			if csr.Subject.CommonName != tt.spec.cn {
				t.Errorf("CN = %q, want %q", csr.Subject.CommonName, tt.spec.cn)
			}
		})
	}
	t.Run("legacy PEM type and surrounding white space", func(t *testing.T) {
		t.Parallel()
		der := csrDER(t, csrSpec{cn: "sports.api"})
		p := pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der})
		if _, err := ParseCSR(append(append([]byte("\n\t "), p...), "\r\n\n"...)); err != nil {
			t.Fatalf("ParseCSR: %v", err)
		}
	})
}

func TestParseCSRRefuses(t *testing.T) {
	t.Parallel()
	ks := testKeys()
	good := pemCSR(csrDER(t, csrSpec{cn: "sports.api"}))
	der := csrDER(t, csrSpec{cn: "sports.api"})
	badSig := bytes.Clone(der)
	badSig[len(badSig)-3] ^= 0xff
	withExt := func(ext ...pkix.Extension) []byte {
		return pemCSR(csrDER(t, csrSpec{cn: "sports.api", ext: ext}))
	}
	ext := func(id asn1.ObjectIdentifier, v any) pkix.Extension {
		return pkix.Extension{Id: id, Value: mustMarshal(t, v)}
	}
	type bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	tests := []struct {
		name  string
		input []byte
		field string
		want  string
	}{
		{"empty", nil, FieldPEM, "not a PEM CSR"},
		{"garbage", []byte("hello, I am a certificate request"), FieldPEM, "not a PEM CSR"},
		{"oversized", append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxCSRSize)...), FieldPEM, "more than the limit of 16384"},
		{"leading text", append([]byte("csr: "), good...), FieldPEM, "not a PEM CSR"},
		{"trailing text", append(bytes.Clone(good), "and more"...), FieldPEM, "trailing data"},
		{"two CSRs", append(bytes.Clone(good), good...), FieldPEM, "a second PEM block"},
		{"CSR and key", append(bytes.Clone(good), keyPEM(t, ks.p256[1])...), FieldPEM, "a second PEM block"},
		{"malformed block before a good one", append([]byte("-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----\n"), good...), FieldPEM, "a second PEM block"},
		{"certificate instead", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), FieldPEM, "want CERTIFICATE REQUEST"},
		{"PEM headers", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: der}), FieldPEM, "headers"},
		{"bad base64", []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n"), FieldPEM, "malformed PEM"},
		{"no END line", good[:len(good)-30], FieldPEM, "malformed PEM"},
		{"DER garbage", pemCSR([]byte{0x30, 0x03, 0x02, 0x01, 0x01}), FieldRequest, "not a valid PKCS#10"},
		{"DER trailing bytes", pemCSR(append(bytes.Clone(der), 0)), FieldRequest, "not a valid PKCS#10"},
		{"bad self-signature", pemCSR(badSig), FieldSignature, "does not verify"},
		{"RSA-1024", pemCSR(csrDER(t, csrSpec{key: ks.rsa1024, cn: "sports.api"})), FieldPublicKey, "want 2048 to 8192 bits"},
		{"P-224", pemCSR(csrDER(t, csrSpec{key: ks.p224, cn: "sports.api"})), FieldPublicKey, `"ECDSA P-224": ECDSA curve; want P-256 or P-384`},
		{"P-521", pemCSR(csrDER(t, csrSpec{key: ks.p521, cn: "sports.api"})), FieldPublicKey, `"ECDSA P-521"`},
		{"Ed25519", pemCSR(csrDER(t, csrSpec{key: ks.ed25519, cn: "sports.api"})), FieldPublicKey, "Ed25519 keys are not issued"},
		{"CA:true", withExt(ext(oidExtBasicConstraints, bc{IsCA: true, MaxPathLen: -1})), FieldExtension, "asks for CA:true"},
		{"CA:true pathlen 0", withExt(ext(oidExtBasicConstraints, bc{IsCA: true, MaxPathLen: 0})), FieldExtension, "asks for CA:true"},
		{"CA:false with pathlen", withExt(ext(oidExtBasicConstraints, bc{MaxPathLen: 3})), FieldExtension, "path length"},
		{"keyUsage keyCertSign", withExt(ext(oidExtKeyUsage, asn1.BitString{Bytes: []byte{0x84}, BitLength: 6})), FieldExtension, "keyCertSign"},
		{"keyUsage cRLSign", withExt(ext(oidExtKeyUsage, asn1.BitString{Bytes: []byte{0x02}, BitLength: 7})), FieldExtension, "keyCertSign or cRLSign"},
		{"extKeyUsage codeSigning", withExt(ext(oidExtExtendedKeyUsage, []asn1.ObjectIdentifier{oidEKUServerAuth, {1, 3, 6, 1, 5, 5, 7, 3, 3}})), FieldExtension, "1.3.6.1.5.5.7.3.3"},
		{"name constraints", withExt(ext(oidExtNameConstraints, struct{}{})), FieldExtension, "nameConstraints (2.5.29.30)"},
		{"authority info access", withExt(ext(oidExtAuthorityInfo, struct{}{})), FieldExtension, "authorityInfoAccess"},
		{"OCSP must-staple", withExt(ext(oidExtTLSFeature, []int{5})), FieldExtension, "tlsFeature"},
		{"unknown extension", withExt(ext(asn1.ObjectIdentifier{1, 2, 3, 4}, true)), FieldExtension, `"1.2.3.4": not allowed in a CSR`},
		{"malformed basicConstraints", withExt(pkix.Extension{Id: oidExtBasicConstraints, Value: []byte{1, 2, 3}}), FieldExtension, "malformed"},
		{"otherName SAN", withExt(sanExtension(t, sanOtherName, mustMarshal(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}))), FieldSAN, `"otherName"`},
		{"directoryName SAN", withExt(sanExtension(t, sanDirName, mustMarshal(t, pkix.Name{CommonName: "x"}.ToRDNSequence()))), FieldSAN, `"directoryName"`},
		{"registeredID SAN", withExt(sanExtension(t, sanRegID, []byte{0x2a})), FieldSAN, `"registeredID"`},
		{"two CNs", pemCSR(csrDER(t, csrSpec{cn: "sports.api", extraCNs: []string{"weather.api"}})), FieldCommonName, "2 common names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr, err := ParseCSR(tt.input)
			if csr != nil {
				t.Errorf("ParseCSR returned a CSR with error %v", err)
			}
			wantCSRError(t, err, tt.field, tt.want)
		})
	}
}

func TestParseCSRRefusesSHA1(t *testing.T) {
	t.Parallel()
	// crypto/x509 no longer creates SHA-1 CSRs, so re-sign a good one by hand.
	ks := testKeys()
	der := csrDER(t, csrSpec{key: ks.rsa2048, cn: "sports.api"})
	var raw struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		t.Fatal(err)
	}
	raw.Alg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue}
	sha1DER := mustMarshal(t, raw)
	_, err := ParseCSR(pemCSR(sha1DER))
	wantCSRError(t, err, FieldSignature, "SHA1-RSA")
}

func TestCSRErrorMessage(t *testing.T) {
	t.Parallel()
	e := refuse(FieldDNSName, strings.Repeat("a", 300), "want %q", "x")
	if len(e.Value) != maxValueInError+3 {
		t.Errorf("Value not shortened: %d bytes", len(e.Value))
	}
	if got := (&CSRError{Field: FieldURI, Reason: "missing"}).Error(); got != "CSR URI SAN: missing" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&CSRError{Field: FieldDNSName, Value: "x.y", Reason: "no"}).Error(); got != `CSR DNS SAN "x.y": no` {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(e, ErrCSRRefused) {
		t.Error("CSRError does not wrap ErrCSRRefused")
	}
}
