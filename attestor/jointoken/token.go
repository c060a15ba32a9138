package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every join token: it names the format (athenz-mesh join token, version
// 1), so a leaked token is recognizable to secret scanners and never mistaken for
// another credential.
const Prefix = "amjt1."

// secretBytes is the entropy of a token: 256 bits.
const secretBytes = 32

// Length is the length of a join token in bytes: the prefix and 43 base64url characters.
const Length = len(Prefix) + (secretBytes*8+5)/6

var b64 = base64.RawURLEncoding.Strict()

// New returns a fresh join token and its SHA-256 hash. Store only the hash (the issuer's
// store keeps nothing else), give the secret to the workload, and forget it.
func New() (secret string, hash []byte, err error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("new join token: %w", err)
	}
	secret = Prefix + b64.EncodeToString(b[:])
	return secret, Hash(secret), nil
}

// Hash returns the SHA-256 of the whole token, prefix included: the value the issuer
// stores and looks tokens up by. Because the token holds 256 random bits, an unsalted
// fast hash is enough: nobody can search for a preimage.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Check reports whether s has the shape of a join token: Prefix, then exactly 43
// base64url characters encoding 32 bytes. Its errors never quote s.
func Check(s string) error {
	rest, ok := strings.CutPrefix(s, Prefix)
	switch {
	case !ok:
		return fmt.Errorf("join token: want the %q prefix", Prefix)
	case len(s) != Length:
		return fmt.Errorf("join token: %d bytes, want %d", len(s), Length)
	}
	if b, err := b64.DecodeString(rest); err != nil || len(b) != secretBytes {
		return errors.New("join token: not base64url after the prefix")
	}
	return nil
}
