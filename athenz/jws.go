package athenz

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
	"slices"
	"strings"
)

// A hand-written compact JWS (RFC 7515) signer and verifier, small enough to read in one
// sitting, and the one every JWS in the module goes through: access tokens here, the
// attestors' register and service-account tokens, and OPA bundle signatures. They need one
// serialization, four algorithms and no extensions, and owning the parser means every
// refusal below is visible here.

// JWSAlgorithms returns the allow-list of JWS algorithms this package signs and
// verifies, each tied to one key type: RS256 to RSA keys (MinRSABits to MaxRSABits),
// ES256 to P-256, ES384 to P-384 and ES512 to P-521 ECDSA keys, with raw R||S
// signatures. Anything else, "none", the HMAC family (which would let a public key be
// used as a shared secret) and RSA-PSS included, is refused before a key is looked up.
// The list is fixed; lookupJWSAlg is its single source of truth. A caller of ParseJWS may
// narrow it, never widen it.
func JWSAlgorithms() []string { return []string{"RS256", "ES256", "ES384", "ES512"} }

// jwsAlg describes one allowed algorithm.
type jwsAlg struct {
	name  string
	hash  crypto.Hash
	curve elliptic.Curve // nil for RSA
}

// lookupJWSAlg is the allow-list: it knows exactly the algorithms JWSAlgorithms names.
func lookupJWSAlg(name string) (jwsAlg, bool) {
	switch name {
	case "RS256":
		return jwsAlg{name, crypto.SHA256, nil}, true
	case "ES256":
		return jwsAlg{name, crypto.SHA256, elliptic.P256()}, true
	case "ES384":
		return jwsAlg{name, crypto.SHA384, elliptic.P384()}, true
	case "ES512":
		return jwsAlg{name, crypto.SHA512, elliptic.P521()}, true
	}
	return jwsAlg{}, false
}

// JWSAlgorithm returns the one JWS algorithm a key signs and verifies with: RS256 for
// RSA, ES256, ES384 or ES512 for ECDSA P-256, P-384 or P-521. Keys that fail
// CheckPublicKey give an error wrapping ErrUnsupportedKey.
func JWSAlgorithm(pub crypto.PublicKey) (string, error) {
	alg, err := jwsAlgForKey(pub)
	return alg.name, err
}

// jwsAlgForKey picks the algorithm a public key signs with.
func jwsAlgForKey(pub crypto.PublicKey) (jwsAlg, error) {
	if err := CheckPublicKey(pub); err != nil {
		return jwsAlg{}, err
	}
	name := "RS256"
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P256():
			name = "ES256"
		case elliptic.P384():
			name = "ES384"
		default:
			name = "ES512"
		}
	}
	alg, _ := lookupJWSAlg(name)
	return alg, nil
}

// JWSHeader is the protected header of a compact JWS: the members this package writes
// and the only ones it reads. Members that carry or point to keys (jwk, jku, x5c, x5u)
// are never read; keys come from the verifier's own trusted set, by Kid.
type JWSHeader struct {
	// Alg is the signature algorithm, one of JWSAlgorithms.
	Alg string `json:"alg"`
	// Kid is the id of the signing key, for the verifier to look up in its trusted set.
	Kid string `json:"kid,omitempty"`
	// Typ is the token type, such as "at+jwt" or "JWT"; its meaning is the caller's.
	Typ string `json:"typ,omitempty"`
}

// b64url is the JWS base64url encoding: no padding, and strict, so that each value has
// exactly one encoding (no stray trailing bits).
var b64url = base64.RawURLEncoding.Strict()

// SignJWS returns the compact JWS header.payload.signature of payload, signed by signer
// with the algorithm its key implies (see JWSAlgorithm; ECDSA signatures in the raw R||S
// form JWS requires) and header's Kid and Typ. header.Alg may be left empty; when set it
// must be the key's algorithm. signer may be a hardware or KMS key, and is given
// crypto/rand as its randomness; its public key must pass CheckPublicKey (errors wrap
// ErrUnsupportedKey). The header is written as {"alg","kid","typ"}, in that order,
// omitting an empty kid or typ.
func SignJWS(signer crypto.Signer, header JWSHeader, payload []byte) (string, error) {
	if signer == nil {
		return "", fmt.Errorf("%w: no key", ErrUnsupportedKey)
	}
	alg, err := jwsAlgForKey(signer.Public())
	if err != nil {
		return "", err
	}
	if header.Alg != "" && header.Alg != alg.name {
		return "", fmt.Errorf("%w: alg %.20q with a key that signs %s", ErrUnsupportedAlgorithm, header.Alg, alg.name)
	}
	header.Alg = alg.name
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	input := b64url.EncodeToString(h) + "." + b64url.EncodeToString(payload)
	digest := alg.hash.New()
	digest.Write([]byte(input))
	sig, err := signer.Sign(rand.Reader, digest.Sum(nil), alg.hash)
	if err != nil {
		return "", err
	}
	if alg.curve != nil {
		if sig, err = derToRawECDSA(sig, alg.curve); err != nil {
			return "", err
		}
	}
	return input + "." + b64url.EncodeToString(sig), nil
}

// derToRawECDSA converts an ASN.1 DER ECDSA signature (what crypto.Signer returns) to
// the fixed-length R||S form JWS uses.
func derToRawECDSA(der []byte, curve elliptic.Curve) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	size := (curve.Params().BitSize + 7) / 8
	if sig.R.BitLen() > size*8 || sig.S.BitLen() > size*8 {
		return nil, errors.New("signer returned an ECDSA signature too large for its curve")
	}
	raw := make([]byte, 2*size)
	sig.R.FillBytes(raw[:size])
	sig.S.FillBytes(raw[size:])
	return raw, nil
}

// JWS is a compact JWS read by ParseJWS: its header has been checked against the
// allow-list, its signature is not verified yet. It may be read and verified
// concurrently.
type JWS struct {
	// Header is the decoded protected header.
	Header JWSHeader
	// Payload is the decoded payload. It is not trustworthy until Verify returns nil.
	Payload []byte

	alg   jwsAlg
	input string // header.payload, the signed bytes
	sig   []byte
}

// ParseJWS splits and decodes a compact JWS of at most maxLen bytes. It refuses, with
// errors wrapping ErrTokenMalformed, anything longer, anything but three non-empty
// dot-separated parts in strict unpadded base64url, a header that is not one JSON object
// with unique members (see DecodeJSONObject), an alg, kid or typ that is not a string,
// and a "crit" member (no extensions are understood). An alg outside allowed, or outside
// JWSAlgorithms whatever allowed says, is refused with ErrUnsupportedAlgorithm; an empty
// allowed refuses every token. Header members that name keys by value or by reference
// (jwk, jku, x5c, x5u) are never used: the caller finds the key by Header.Kid and passes
// it to Verify.
func ParseJWS(token string, maxLen int, allowed ...string) (*JWS, error) {
	if len(token) > maxLen {
		return nil, fmt.Errorf("%w: JWS of %d bytes, limit %d", ErrTokenMalformed, len(token), maxLen)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, fmt.Errorf("%w: want three dot-separated parts (compact JWS)", ErrTokenMalformed)
	}
	if h == "" || p == "" || s == "" {
		return nil, fmt.Errorf("%w: empty JWS part", ErrTokenMalformed)
	}
	headerJSON, err := b64url.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url: %v", ErrTokenMalformed, err)
	}
	hdr, err := decodeJWSHeader(headerJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	alg, ok := lookupJWSAlg(hdr.Alg)
	if !ok || !slices.Contains(allowed, hdr.Alg) {
		return nil, fmt.Errorf("%w: algorithm %.20q is not allowed (allowed: %s)", ErrUnsupportedAlgorithm, hdr.Alg, strings.Join(allowed, ", "))
	}
	payload, err := b64url.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url: %v", ErrTokenMalformed, err)
	}
	sig, err := b64url.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url: %v", ErrTokenMalformed, err)
	}
	return &JWS{Header: hdr, Payload: payload, alg: alg, input: token[:len(h)+1+len(p)], sig: sig}, nil
}

// decodeJWSHeader reads the header members ParseJWS uses, by exact name.
func decodeJWSHeader(b []byte) (JWSHeader, error) {
	members, err := DecodeJSONObject(b)
	if err != nil {
		return JWSHeader{}, err
	}
	if _, ok := members["crit"]; ok {
		return JWSHeader{}, errors.New(`"crit" is present: critical extensions are not supported`)
	}
	var hdr JWSHeader
	err = DecodeJSONMembers(members, map[string]any{"alg": &hdr.Alg, "kid": &hdr.Kid, "typ": &hdr.Typ})
	return hdr, err
}

// Verify checks the signature under pub. pub must pass CheckPublicKey (errors wrap
// ErrUnsupportedKey) and be of the type and curve the header's algorithm names (errors
// wrap ErrUnsupportedAlgorithm); a signature that does not verify, or an ECDSA one of the
// wrong length, wraps ErrBadSignature. pub must come from the verifier's trusted keys,
// found by Header.Kid.
func (j *JWS) Verify(pub crypto.PublicKey) error {
	if j.alg.name == "" {
		return errors.New("JWS: Verify needs a token from ParseJWS")
	}
	if err := CheckPublicKey(pub); err != nil {
		return err
	}
	h := j.alg.hash.New()
	h.Write([]byte(j.input))
	digest := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if j.alg.curve != nil {
			return fmt.Errorf("%w: alg %s with an RSA key", ErrUnsupportedAlgorithm, j.alg.name)
		}
		if rsa.VerifyPKCS1v15(k, j.alg.hash, digest, j.sig) != nil {
			return fmt.Errorf("JWS %s: %w", j.alg.name, ErrBadSignature)
		}
	case *ecdsa.PublicKey:
		if j.alg.curve != k.Curve {
			return fmt.Errorf("%w: alg %s with an ECDSA %s key", ErrUnsupportedAlgorithm, j.alg.name, k.Curve.Params().Name)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(j.sig) != 2*size {
			return fmt.Errorf("JWS %s: %w: signature is %d bytes, want %d", j.alg.name, ErrBadSignature, len(j.sig), 2*size)
		}
		r := new(big.Int).SetBytes(j.sig[:size])
		s := new(big.Int).SetBytes(j.sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return fmt.Errorf("JWS %s: %w", j.alg.name, ErrBadSignature)
		}
	}
	return nil
}

// maxJSONDepth bounds nesting in token JSON; the claims read here nest three levels at
// most (the kubernetes.io claim of a service-account token).
const maxJSONDepth = 16

// DecodeJSONObject reads b as exactly one JSON object whose member names are unique
// (compared exactly, byte for byte), in that object and in every object nested in it, at
// most 16 levels deep, and returns its members undecoded. Reading members by exact name,
// instead of letting encoding/json match struct fields case-insensitively, means "EXP" or
// "ſcp" can never stand in for "exp" or "scp", and refusing duplicates means no two JSON
// parsers can disagree about which value counts.
func DecodeJSONObject(b []byte) (map[string]json.RawMessage, error) {
	if err := checkUniqueMembers(b); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// DecodeJSONMembers decodes, for each name in dst, members[name] into dst[name] with
// encoding/json. A missing member or a JSON null leaves the destination alone; members
// not named in dst are ignored. Integer destinations take only integers written without
// fraction or exponent, so "iat": 1.5 or 1e9 is an error. Errors name the member.
func DecodeJSONMembers(members map[string]json.RawMessage, dst map[string]any) error {
	for name, v := range dst {
		raw, ok := members[name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("member %q: %v", name, err)
		}
	}
	return nil
}

// checkUniqueMembers walks b and fails on a repeated member name in any object, on
// nesting deeper than maxJSONDepth, and when the top level is not one object.
func checkUniqueMembers(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	if err := walkJSONObject(dec, 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// walkJSONObject consumes the members of an object whose '{' has been read, and its '}'.
func walkJSONObject(dec *json.Decoder, depth int) error {
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if _, dup := seen[name]; dup {
			return fmt.Errorf("member %.40q appears twice", name)
		}
		seen[name] = struct{}{}
		if err := walkJSONValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// walkJSONValue consumes one value, descending into objects and arrays.
func walkJSONValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'), json.Delim('['):
		if depth >= maxJSONDepth {
			return fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
		}
	}
	switch tok {
	case json.Delim('{'):
		return walkJSONObject(dec, depth+1)
	case json.Delim('['):
		for dec.More() {
			if err := walkJSONValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	return nil
}
