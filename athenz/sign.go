package athenz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Key size limits enforced on every key this package signs, verifies or parses.
const (
	// MinRSABits is the smallest RSA modulus accepted. Athenz and SIA generate 2048-bit
	// keys; anything smaller is breakable and refused.
	MinRSABits = 2048
	// MaxRSABits is the largest RSA modulus accepted. Verification cost grows with the
	// square of the size, so an attacker-supplied 64k-bit key would be a cheap way to burn
	// CPU; no Athenz deployment uses more than 4096 bits.
	MaxRSABits = 8192
)

// ErrBadSignature is wrapped by VerifyYBase64 when a signature is malformed or does not
// match the data and key. Callers treat it as "forged or corrupted", as opposed to a
// configuration problem such as an unsupported key.
var ErrBadSignature = errors.New("signature does not verify")

// ErrUnsupportedKey is wrapped when a key is of a type, size or curve that Athenz
// signatures do not use: RSA under MinRSABits or over MaxRSABits, ECDSA on a curve other
// than P-256, P-384 or P-521, or any other algorithm (Ed25519 included).
var ErrUnsupportedKey = errors.New("unsupported key")

// CheckPublicKey returns nil when pub is an RSA key of MinRSABits to MaxRSABits bits or an
// ECDSA key on P-256, P-384 or P-521, and an error wrapping ErrUnsupportedKey otherwise.
// The issuer applies the same rule to CSR keys.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return fmt.Errorf("%w: empty RSA key", ErrUnsupportedKey)
		}
		bits := k.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, want %d to %d", ErrUnsupportedKey, bits, MinRSABits, MaxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return fmt.Errorf("%w: empty ECDSA key", ErrUnsupportedKey)
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s, want P-256, P-384 or P-521", ErrUnsupportedKey, k.Curve.Params().Name)
	default:
		return fmt.Errorf("%w: %T, want an RSA or ECDSA key", ErrUnsupportedKey, pub)
	}
}

// SignYBase64 signs the SHA-256 digest of data with key and returns the signature in
// ybase64: RSA keys give a PKCS#1 v1.5 signature, ECDSA keys an ASN.1 DER signature, as
// n-tokens, role tokens and legacy signed policy data require (JWS uses raw R||S instead,
// and is not done here). key may be a hardware or KMS signer; its public key must pass
// CheckPublicKey.
func SignYBase64(key crypto.Signer, data []byte) (string, error) {
	if key == nil {
		return "", fmt.Errorf("sign: %w: no key", ErrUnsupportedKey)
	}
	if err := CheckPublicKey(key.Public()); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	digest := sha256.Sum256(data)
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return YEncode(sig), nil
}

// VerifyYBase64 checks that sig, a ybase64 signature made as SignYBase64 makes it, covers
// exactly data under pub. It returns nil on success, an error wrapping ErrBadSignature when
// the signature is malformed or wrong, and one wrapping ErrUnsupportedKey when pub is not
// acceptable. ECDSA signatures must be strict DER (no trailing bytes), which is stricter
// than Athenz's Go verifier and refuses nothing a real signer produces.
func VerifyYBase64(pub crypto.PublicKey, data []byte, sig string) error {
	if err := CheckPublicKey(pub); err != nil {
		return fmt.Errorf("verify signature: %w", err)
	}
	raw, err := YDecode(sig)
	if err != nil {
		return fmt.Errorf("verify signature: %w: %w", ErrBadSignature, err)
	}
	digest := sha256.Sum256(data)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], raw) != nil {
			return fmt.Errorf("verify RSA signature: %w", ErrBadSignature)
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest[:], raw) {
			return fmt.Errorf("verify ECDSA signature: %w", ErrBadSignature)
		}
	}
	return nil
}

// ParsePublicKeyPEM parses one PEM public key: PKIX "PUBLIC KEY" (RSA or ECDSA) or PKCS#1
// "RSA PUBLIC KEY". Text around the block is ignored, but a second PEM block is an error,
// so that a file can never mean two keys. The key must pass CheckPublicKey.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("public key: no PEM block found")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("public key: found a second PEM block (%q); want exactly one key", next.Type)
	}
	var (
		pub crypto.PublicKey
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("public key: PEM block is %q, want \"PUBLIC KEY\" or \"RSA PUBLIC KEY\"", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("public key: parse %s: %w", block.Type, err)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// DecodePublicKeyEntry decodes the key of an Athenz PublicKeyEntry (and of athenz.conf's
// ztsPublicKeys/zmsPublicKeys): the ybase64 encoding of a PEM public key.
func DecodePublicKeyEntry(entry string) (crypto.PublicKey, error) {
	pemBytes, err := YDecode(entry)
	if err != nil {
		return nil, fmt.Errorf("public key entry: %w", err)
	}
	pub, err := ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("public key entry: %w", err)
	}
	return pub, nil
}

// EncodePublicKeyEntry returns pub in PublicKeyEntry form: a PKIX "PUBLIC KEY" PEM block,
// ybase64-encoded. Athenz's Go and Java verifiers read exactly this form.
func EncodePublicKeyEntry(pub crypto.PublicKey) (string, error) {
	if err := CheckPublicKey(pub); err != nil {
		return "", fmt.Errorf("encode public key entry: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key entry: %w", err)
	}
	return YEncode(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ParsePrivateKeyPEM parses the first PEM private key in b: "EC PRIVATE KEY" (SEC 1),
// "RSA PRIVATE KEY" (PKCS#1) or "PRIVATE KEY" (PKCS#8 holding RSA or ECDSA). An "EC
// PARAMETERS" block before the key, as `openssl ecparam -genkey` writes, is skipped;
// anything after the key (a certificate chain, say) is ignored. Encrypted keys are refused
// with a hint, since no Athenz tool writes them. The result is an *rsa.PrivateKey or an
// *ecdsa.PrivateKey whose public half passes CheckPublicKey.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	var block *pem.Block
	for rest := b; ; {
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("private key: no PEM private key block found")
		}
		if block.Type != "EC PARAMETERS" {
			break
		}
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, errors.New("private key: encrypted keys are not supported; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("private key: PEM block is %q, want \"EC PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: parse %s: %w", block.Type, err)
	}
	var signer crypto.Signer
	switch k := key.(type) {
	case *rsa.PrivateKey:
		signer = k
	case *ecdsa.PrivateKey:
		signer = k
	default:
		return nil, fmt.Errorf("private key: %w: %T, want an RSA or ECDSA key", ErrUnsupportedKey, key)
	}
	if err := CheckPublicKey(signer.Public()); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return signer, nil
}
