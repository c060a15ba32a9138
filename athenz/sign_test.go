package athenz_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestSignVerifyYBase64(t *testing.T) {
	data := []byte("v=S1;d=sports;n=api;k=0;a=6ddc9124f255b2af;t=1700000000;e=1700003600")
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa p256", testP256()},
		{"ecdsa p384", testP384()},
		{"ecdsa p521", testP521()},
		{"rsa 2048", testRSA2048()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := athenz.SignYBase64(tc.key, data)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Trim(sig, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
				t.Errorf("signature %q has characters outside ybase64", sig)
			}
			if err := athenz.VerifyYBase64(tc.key.Public(), data, sig); err != nil {
				t.Errorf("verify own signature: %v", err)
			}
			raw, err := athenz.YDecode(sig)
			if err != nil {
				t.Fatal(err)
			}
			digest := sha256.Sum256(data)
			switch k := tc.key.(type) {
			case *ecdsa.PrivateKey:
				var rs struct{ R, S *big.Int }
				rest, err := asn1.Unmarshal(raw, &rs)
				if err != nil || len(rest) != 0 {
					t.Fatalf("ECDSA signature is not exactly one DER sequence: %v, %d trailing bytes", err, len(rest))
				}
				if !ecdsa.Verify(&k.PublicKey, digest[:], rs.R, rs.S) {
					t.Error("standard library does not verify the DER signature over SHA-256")
				}
			case *rsa.PrivateKey:
				if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, digest[:], raw); err != nil {
					t.Errorf("not a PKCS#1 v1.5 SHA-256 signature: %v", err)
				}
			}
		})
	}
}

// p1363 returns the raw R||S form of an ECDSA DER signature, as JWS uses it.
func p1363(t *testing.T, der []byte, size int) []byte {
	t.Helper()
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out
}

func TestVerifyYBase64Attacks(t *testing.T) {
	data := []byte("signed policy bytes")
	ecSig, err := athenz.SignYBase64(testP256(), data)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := athenz.SignYBase64(testRSA2048(), data)
	if err != nil {
		t.Fatal(err)
	}
	ecRaw, _ := athenz.YDecode(ecSig)
	rsaRaw, _ := athenz.YDecode(rsaSig)
	tests := []struct {
		name string
		pub  crypto.PublicKey
		data []byte
		sig  string
	}{
		{"ecdsa tampered data", testP256().Public(), []byte("signed policy bytez"), ecSig},
		{"ecdsa appended data", testP256().Public(), append([]byte("signed policy bytes"), ' '), ecSig},
		{"ecdsa wrong key", testP256b().Public(), data, ecSig},
		{"ecdsa truncated signature", testP256().Public(), data, athenz.YEncode(ecRaw[:len(ecRaw)-1])},
		{"ecdsa truncated text", testP256().Public(), data, ecSig[:len(ecSig)-4]},
		{"ecdsa trailing bytes after DER", testP256().Public(), data, athenz.YEncode(append(append([]byte{}, ecRaw...), 0))},
		{"ecdsa raw r||s instead of DER", testP256().Public(), data, athenz.YEncode(p1363(t, ecRaw, 32))},
		{"ecdsa flipped bit", testP256().Public(), data, athenz.YEncode(flip(ecRaw, len(ecRaw)-1))},
		{"rsa tampered data", testRSA2048().Public(), []byte("Signed policy bytes"), rsaSig},
		{"rsa wrong key", testRSA2048b().Public(), data, rsaSig},
		{"rsa truncated signature", testRSA2048().Public(), data, athenz.YEncode(rsaRaw[:len(rsaRaw)-1])},
		{"rsa flipped bit", testRSA2048().Public(), data, athenz.YEncode(flip(rsaRaw, 10))},
		{"rsa signature against ecdsa key", testP256().Public(), data, rsaSig},
		{"ecdsa signature against rsa key", testRSA2048().Public(), data, ecSig},
		{"garbage ybase64", testP256().Public(), data, "not ybase64!"},
		{"std base64 alphabet and padding", testRSA2048().Public(), data, base64.StdEncoding.EncodeToString(rsaRaw)},
		{"empty signature", testRSA2048().Public(), data, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := athenz.VerifyYBase64(tc.pub, tc.data, tc.sig)
			if err == nil {
				t.Fatal("forged or damaged signature verified")
			}
			if !errors.Is(err, athenz.ErrBadSignature) {
				t.Errorf("error %v does not wrap ErrBadSignature", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x01
	return c
}

func TestCheckPublicKey(t *testing.T) {
	huge := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), athenz.MaxRSABits), E: 65537}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		wantErr string // "" when accepted
	}{
		{"p256", testP256().Public(), ""},
		{"p384", testP384().Public(), ""},
		{"p521", testP521().Public(), ""},
		{"rsa 2048", testRSA2048().Public(), ""},
		{"rsa 1024", testRSA1024().Public(), "unsupported key: RSA key of 1024 bits, want 2048 to 8192"},
		{"rsa too large", huge, "unsupported key: RSA key of 8193 bits, want 2048 to 8192"},
		{"p224", testP224().Public(), "unsupported key: ECDSA curve P-224, want P-256, P-384 or P-521"},
		{"ed25519", edPub, "unsupported key: ed25519.PublicKey, want an RSA or ECDSA key"},
		{"nil", nil, "unsupported key: <nil>, want an RSA or ECDSA key"},
		{"nil rsa", (*rsa.PublicKey)(nil), "unsupported key: empty RSA key"},
		{"empty ecdsa", &ecdsa.PublicKey{}, "unsupported key: empty ECDSA key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := athenz.CheckPublicKey(tc.pub)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %s", err, tc.wantErr)
			}
			if !errors.Is(err, athenz.ErrUnsupportedKey) {
				t.Errorf("error does not wrap ErrUnsupportedKey")
			}
		})
	}
}

func TestSignAndVerifyRefuseUnsupportedKeys(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"rsa 1024", testRSA1024()},
		{"p224", testP224()},
		{"ed25519", edKey},
		{"nil", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := athenz.SignYBase64(tc.key, []byte("x")); !errors.Is(err, athenz.ErrUnsupportedKey) {
				t.Errorf("sign error %v, want ErrUnsupportedKey", err)
			}
			if tc.key == nil {
				return
			}
			if err := athenz.VerifyYBase64(tc.key.Public(), []byte("x"), "AAAA"); !errors.Is(err, athenz.ErrUnsupportedKey) {
				t.Errorf("verify error %v, want ErrUnsupportedKey", err)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	ecPEM := pkixPEM(t, testP256().Public())
	rsaPEM := pkixPEM(t, testRSA2048().Public())
	pkcs1 := pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&testRSA2048().PublicKey))
	tests := []struct {
		name    string
		input   []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{"pkix ecdsa", ecPEM, testP256().Public(), ""},
		{"pkix rsa", rsaPEM, testRSA2048().Public(), ""},
		{"pkcs1 rsa", pkcs1, testRSA2048().Public(), ""},
		{"text around the block", append(append([]byte("key for sys.auth.zts:\n"), ecPEM...), "\n\n"...), testP256().Public(), ""},
		{"two blocks", append(append([]byte{}, ecPEM...), rsaPEM...), nil, `found a second PEM block ("PUBLIC KEY")`},
		{"no block", []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), nil, "no PEM block found"},
		{"empty", nil, nil, "no PEM block found"},
		{"certificate block", pemBlock("CERTIFICATE", []byte{1}), nil, `PEM block is "CERTIFICATE"`},
		{"private key block", sec1PEM(t, testP256()), nil, `PEM block is "EC PRIVATE KEY"`},
		{"corrupt der", pemBlock("PUBLIC KEY", []byte{0x30, 0x03, 1, 2}), nil, "parse PUBLIC KEY"},
		{"rsa 1024", pkixPEM(t, testRSA1024().Public()), nil, "RSA key of 1024 bits"},
		{"p224", pkixPEM(t, testP224().Public()), nil, "ECDSA curve P-224"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := athenz.ParsePublicKeyPEM(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want) {
				t.Error("parsed key differs from the original")
			}
		})
	}
}

func TestPublicKeyEntry(t *testing.T) {
	for _, key := range []crypto.Signer{testP256(), testRSA2048(), testP384()} {
		entry, err := athenz.EncodePublicKeyEntry(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		pemText, err := athenz.YDecode(entry)
		if err != nil || !strings.HasPrefix(string(pemText), "-----BEGIN PUBLIC KEY-----\n") {
			t.Fatalf("entry is not ybase64 of a PKIX PEM block: %q, %v", pemText, err)
		}
		pub, err := athenz.DecodePublicKeyEntry(entry)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Error("round trip changed the key")
		}
	}
	tests := []struct {
		name, entry, wantErr string
	}{
		{"plain pem instead of ybase64", string(pkixPEM(t, testP256().Public())), "public key entry: ybase64: invalid character"},
		{"ybase64 of garbage", athenz.YEncode([]byte("hello")), "public key entry: public key: no PEM block found"},
		{"empty", "", "no PEM block found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := athenz.DecodePublicKeyEntry(tc.entry); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := athenz.EncodePublicKeyEntry(testRSA1024().Public()); !errors.Is(err, athenz.ErrUnsupportedKey) {
		t.Errorf("encoding a 1024-bit key: error %v, want ErrUnsupportedKey", err)
	}
}
