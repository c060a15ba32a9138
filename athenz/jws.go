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
	"strings"
)

// A hand-written compact JWS (RFC 7515) signer and verifier, small enough to read in one
// sitting: Athenz access tokens need one serialization, four algorithms and no
// extensions, and owning the parser means every refusal below is visible here.

// JWSAlgorithms returns the allow-list of JWS algorithms this package signs and
// verifies, each tied to one key type: RS256 to RSA keys (MinRSABits to MaxRSABits),
// ES256 to P-256, ES384 to P-384 and ES512 to P-521 ECDSA keys, with raw R||S
// signatures. Anything else, "none", the HMAC family (which would let a public key be
// used as a shared secret) and RSA-PSS included, is refused before a key is looked up.
// The list is fixed; lookupJWSAlg is its single source of truth.
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

// jwsHeader is the protected header this package writes and reads.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

// b64url is the JWS base64url encoding: no padding, and strict, so that each value has
// exactly one encoding (no stray trailing bits).
var b64url = base64.RawURLEncoding.Strict()

// signCompactJWS returns header.payload.signature for the JSON payload, signed by
// signer with the algorithm its key type implies.
func signCompactJWS(signer crypto.Signer, kid, typ string, payload []byte) (string, error) {
	if signer == nil {
		return "", fmt.Errorf("%w: no key", ErrUnsupportedKey)
	}
	alg, err := jwsAlgForKey(signer.Public())
	if err != nil {
		return "", err
	}
	header, err := json.Marshal(jwsHeader{Alg: alg.name, Kid: kid, Typ: typ})
	if err != nil {
		return "", err
	}
	input := b64url.EncodeToString(header) + "." + b64url.EncodeToString(payload)
	h := alg.hash.New()
	h.Write([]byte(input))
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), alg.hash)
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

// parsedJWS is a compact JWS whose header has been read and checked against the
// allow-list, but whose signature is not yet verified.
type parsedJWS struct {
	header  jwsHeader
	alg     jwsAlg
	input   string // header.payload, the signed bytes
	payload []byte
	sig     []byte
}

// parseCompactJWS splits and decodes a compact JWS. It refuses anything but three
// non-empty dot-separated base64url parts, a header that is not a JSON object with
// unique members, an "alg" outside JWSAlgorithms and any "crit" header (no extensions
// are understood). Header fields that name keys by reference or by value (jku, jwk, x5u,
// x5c) are never used: keys come only from the caller's KeySet, by kid.
func parseCompactJWS(token string) (*parsedJWS, error) {
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
	members, err := decodeJSONObject(headerJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	var hdr jwsHeader
	for name, raw := range members {
		switch name {
		case "alg":
			err = json.Unmarshal(raw, &hdr.Alg)
		case "kid":
			err = json.Unmarshal(raw, &hdr.Kid)
		case "typ":
			err = json.Unmarshal(raw, &hdr.Typ)
		case "crit":
			return nil, fmt.Errorf("%w: header has \"crit\"; no JWS extensions are supported", ErrTokenMalformed)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: header %q: %v", ErrTokenMalformed, name, err)
		}
	}
	alg, ok := lookupJWSAlg(hdr.Alg)
	if !ok {
		return nil, fmt.Errorf("%w: alg %.20q (allowed: %s)", ErrUnsupportedAlgorithm, hdr.Alg, strings.Join(JWSAlgorithms(), ", "))
	}
	payload, err := b64url.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url: %v", ErrTokenMalformed, err)
	}
	sig, err := b64url.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url: %v", ErrTokenMalformed, err)
	}
	return &parsedJWS{header: hdr, alg: alg, input: token[:len(h)+1+len(p)], payload: payload, sig: sig}, nil
}

// verify checks the signature under pub, which must be of the type the algorithm names.
func (j *parsedJWS) verify(pub crypto.PublicKey) error {
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

// maxJSONDepth bounds nesting in token JSON; Athenz claims nest two levels (cnf).
const maxJSONDepth = 16

// decodeJSONObject reads b as one JSON object with unique member names (compared
// exactly, byte for byte) and returns its members undecoded. Reading members by exact
// name, instead of letting encoding/json match struct fields case-insensitively, means
// "EXP" or "ſcp" can never stand in for "exp" or "scp", and refusing duplicates means no
// two JSON parsers can disagree about which value counts.
func decodeJSONObject(b []byte) (map[string]json.RawMessage, error) {
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
