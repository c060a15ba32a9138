package athenz_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestParsePrivateKeyPEM(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	encrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"},
		Bytes:   []byte{1, 2, 3},
	})
	tests := []struct {
		name      string
		input     []byte
		want      crypto.Signer
		wantErr   string
		unsupport bool // the error must wrap ErrUnsupportedKey
	}{
		{"sec1 ecdsa", sec1PEM(t, testP256()), testP256(), "", false},
		{"sec1 after ec parameters", append(ecParams, sec1PEM(t, testP384())...), testP384(), "", false},
		{"pkcs1 rsa", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSA2048())), testRSA2048(), "", false},
		{"pkcs8 ecdsa", pkcs8PEM(t, testP521()), testP521(), "", false},
		{"pkcs8 rsa", pkcs8PEM(t, testRSA2048()), testRSA2048(), "", false},
		{"key followed by certificate", append(sec1PEM(t, testP256()), pemBlock("CERTIFICATE", []byte{1})...), testP256(), "", false},
		{"pkcs8 ed25519", pkcs8PEM(t, edKey), nil, "ed25519.PrivateKey, want an RSA or ECDSA key", true},
		{"rsa 1024", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSA1024())), nil, "RSA key of 1024 bits", true},
		{"p224", sec1PEM(t, testP224()), nil, "ECDSA curve P-224", true},
		{"legacy encrypted", encrypted, nil, "encrypted keys are not supported", false},
		{"pkcs8 encrypted", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}), nil, "encrypted keys are not supported", false},
		{"public key block", pkixPEM(t, testP256().Public()), nil, `PEM block is "PUBLIC KEY"`, false},
		{"only ec parameters", ecParams, nil, "no PEM private key block found", false},
		{"no pem", []byte("not a key"), nil, "no PEM private key block found", false},
		{"corrupt der", pemBlock("EC PRIVATE KEY", []byte{0x30, 0x00}), nil, "parse EC PRIVATE KEY", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := athenz.ParsePrivateKeyPEM(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if tc.unsupport && !errors.Is(err, athenz.ErrUnsupportedKey) {
					t.Errorf("error %v does not wrap ErrUnsupportedKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(tc.want) {
				t.Fatal("parsed key differs from the original")
			}
			sig, err := athenz.SignYBase64(key, []byte("data"))
			if err != nil {
				t.Fatal(err)
			}
			if err := athenz.VerifyYBase64(tc.want.Public(), []byte("data"), sig); err != nil {
				t.Errorf("signature by the parsed key does not verify: %v", err)
			}
		})
	}
}
