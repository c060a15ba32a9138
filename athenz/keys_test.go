package athenz_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
)

// Test keys are generated once per test binary: RSA generation is slow under -race, and
// no test depends on a key being fresh.
var (
	testP256     = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	testP256b    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P256()) })
	testP384     = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P384()) })
	testP521     = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P521()) })
	testP224     = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECDSA(elliptic.P224()) })
	testRSA2048  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA2048b = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA1024  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustECDSA(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// pemBlock encodes der as one PEM block of the given type.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// pkixPEM returns pub as a PKIX "PUBLIC KEY" PEM block.
func pkixPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der)
}

// pkcs8PEM returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func pkcs8PEM(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// sec1PEM returns key as an "EC PRIVATE KEY" PEM block.
func sec1PEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}
