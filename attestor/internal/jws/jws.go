// Package jws reads, verifies and writes compact JWS tokens (RFC 7515) for the attestors:
// one serialization, an algorithm allow-list chosen by the caller, keys found only by kid
// in the caller's trusted set, and strict JSON (exact member names, no duplicates). It
// exists because the athenz package keeps its JWS code unexported; the rules are the same.
package jws

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Errors wrapped by Parse, Verify and Sign, for callers to map to their refusal reasons.
var (
	// ErrMalformed: not a compact JWS with a readable header, payload and signature.
	ErrMalformed = errors.New("malformed JWS")
	// ErrAlgorithm: the header names an algorithm outside the caller's allow-list, or
	// one that does not fit the key.
	ErrAlgorithm = errors.New("JWS algorithm not allowed")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("JWS signature does not verify")
)

// The algorithms this package knows, each tied to one key type and curve.
const (
	// RS256 is RSA PKCS#1 v1.5 with SHA-256, for RSA keys.
	RS256 = "RS256"
	// ES256 is ECDSA P-256 with SHA-256.
	ES256 = "ES256"
	// ES384 is ECDSA P-384 with SHA-384.
	ES384 = "ES384"
	// ES512 is ECDSA P-521 with SHA-512.
	ES512 = "ES512"
)

type algorithm struct {
	name  string
	hash  crypto.Hash
	curve elliptic.Curve // nil for RSA
}

func lookup(name string) (algorithm, bool) {
	switch name {
	case RS256:
		return algorithm{name, crypto.SHA256, nil}, true
	case ES256:
		return algorithm{name, crypto.SHA256, elliptic.P256()}, true
	case ES384:
		return algorithm{name, crypto.SHA384, elliptic.P384()}, true
	case ES512:
		return algorithm{name, crypto.SHA512, elliptic.P521()}, true
	}
	return algorithm{}, false
}

// Header is the protected header members this package reads and writes.
type Header struct {
	// Alg is the signature algorithm.
	Alg string `json:"alg"`
	// Kid is the id of the signing key, looked up in the verifier's trusted set.
	Kid string `json:"kid,omitempty"`
	// Typ is the token type, e.g. "JWT".
	Typ string `json:"typ,omitempty"`
}

// Token is a parsed compact JWS whose signature has not been verified yet.
type Token struct {
	// Header is the decoded protected header.
	Header Header
	// Payload is the decoded payload, not trustworthy until Verify returns nil.
	Payload []byte
	alg     algorithm
	input   string // header.payload, the signed bytes
	sig     []byte
}

var b64 = base64.RawURLEncoding.Strict()

// Parse splits and decodes a compact JWS of at most maxLen bytes. It refuses anything but
// three non-empty base64url parts, a header that is not one JSON object with unique
// members, a "crit" header, and an "alg" not in allowed (which must name algorithms of
// this package; "none" and the HMAC family never are). Header members that name keys by
// value or reference (jwk, jku, x5c, x5u) are ignored: keys come from the caller by kid.
func Parse(token string, maxLen int, allowed ...string) (*Token, error) {
	if len(token) > maxLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), maxLen)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 || h == "" || p == "" || s == "" {
		return nil, fmt.Errorf("%w: want three non-empty dot-separated parts", ErrMalformed)
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	members, err := DecodeObject(hb)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if _, ok := members["crit"]; ok {
		return nil, fmt.Errorf("%w: header has \"crit\"; no JWS extensions are supported", ErrMalformed)
	}
	var hdr Header
	for name, dst := range map[string]*string{"alg": &hdr.Alg, "kid": &hdr.Kid, "typ": &hdr.Typ} {
		if _, err := Member(members, name, dst); err != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
		}
	}
	alg, ok := lookup(hdr.Alg)
	if !ok || !contains(allowed, hdr.Alg) {
		return nil, fmt.Errorf("%w: alg %.20q (allowed: %s)", ErrAlgorithm, hdr.Alg, strings.Join(allowed, ", "))
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	return &Token{Header: hdr, Payload: payload, alg: alg, input: token[:len(h)+1+len(p)], sig: sig}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Verify checks the signature under pub, which must pass athenz.CheckPublicKey (errors
// wrap athenz.ErrUnsupportedKey) and be of the type and curve the algorithm names (errors
// wrap ErrAlgorithm). A wrong signature wraps ErrSignature.
func (t *Token) Verify(pub crypto.PublicKey) error {
	if err := athenz.CheckPublicKey(pub); err != nil {
		return err
	}
	h := t.alg.hash.New()
	h.Write([]byte(t.input))
	digest := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if t.alg.curve != nil {
			return fmt.Errorf("%w: %s with an RSA key", ErrAlgorithm, t.alg.name)
		}
		if rsa.VerifyPKCS1v15(k, t.alg.hash, digest, t.sig) != nil {
			return ErrSignature
		}
	case *ecdsa.PublicKey:
		if t.alg.curve != k.Curve {
			return fmt.Errorf("%w: %s with an ECDSA %s key", ErrAlgorithm, t.alg.name, k.Curve.Params().Name)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(t.sig) != 2*size {
			return fmt.Errorf("%w: %d-byte signature, want %d", ErrSignature, len(t.sig), 2*size)
		}
		r := new(big.Int).SetBytes(t.sig[:size])
		s := new(big.Int).SetBytes(t.sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return ErrSignature
		}
	}
	return nil
}

// Sign returns the compact JWS of payload signed by signer, with the algorithm its key
// implies (RS256 for RSA, ES256/ES384/ES512 for P-256/P-384/P-521) and the given kid and
// typ in the header. signer may be a hardware or KMS key; its public key must pass
// athenz.CheckPublicKey.
func Sign(signer crypto.Signer, kid, typ string, payload []byte) (string, error) {
	if signer == nil {
		return "", fmt.Errorf("%w: no signing key", athenz.ErrUnsupportedKey)
	}
	pub := signer.Public()
	if err := athenz.CheckPublicKey(pub); err != nil {
		return "", err
	}
	alg, _ := lookup(RS256)
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P256():
			alg, _ = lookup(ES256)
		case elliptic.P384():
			alg, _ = lookup(ES384)
		default:
			alg, _ = lookup(ES512)
		}
	}
	header, err := json.Marshal(Header{Alg: alg.name, Kid: kid, Typ: typ})
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	h := alg.hash.New()
	h.Write([]byte(input))
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), alg.hash)
	if err != nil {
		return "", err
	}
	if alg.curve != nil {
		if sig, err = rawECDSA(sig, alg.curve); err != nil {
			return "", err
		}
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// rawECDSA converts the ASN.1 DER signature a crypto.Signer returns into JWS's R||S.
func rawECDSA(der []byte, curve elliptic.Curve) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	size := (curve.Params().BitSize + 7) / 8
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	raw := make([]byte, 2*size)
	sig.R.FillBytes(raw[:size])
	sig.S.FillBytes(raw[size:])
	return raw, nil
}

// maxDepth bounds JSON nesting; token claims nest three levels at most.
const maxDepth = 16

// DecodeObject reads b as exactly one JSON object whose member names are unique (compared
// byte for byte) and returns its members undecoded. Reading members by exact name, unlike
// encoding/json's case-insensitive struct matching, means "JTI" never stands in for
// "jti"; refusing duplicates means no two JSON parsers can read one token differently.
func DecodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	if err := walkObject(dec, 1); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func walkObject(dec *json.Decoder, depth int) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("member %.40q appears twice", name)
		}
		seen[name] = true
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

func walkValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'), json.Delim('['):
		if depth >= maxDepth {
			return fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, depth+1)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	return nil
}

// Member decodes members[name] into dst when present and reports whether it was. A JSON
// null counts as absent. Numbers decode into integer types only when they are integers
// written without fraction or exponent, so "iat": 1.5 or "1e9" is an error.
func Member(members map[string]json.RawMessage, name string, dst any) (bool, error) {
	raw, ok := members[name]
	if !ok || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return true, fmt.Errorf("member %q: %v", name, err)
	}
	return true, nil
}
