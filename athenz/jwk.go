package athenz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// MaxJWKSLength is the largest JWKS document, in bytes, that ParseJWKS reads; a ZTS key
// set holds a handful of keys in a few kilobytes.
const MaxJWKSLength = 1 << 20

// maxJWKSKeys bounds the keys in one set.
const maxJWKSKeys = 1000

// JWK is one JSON Web Key as ZTS publishes it at /oauth2/keys and in athenz.conf's
// AthenzJWKConfig: the field names and optionality of the ZTS client's JWK type. Values
// are base64url without padding; EC coordinates have the curve's fixed length.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKS is a JSON Web Key Set, {"keys":[...]}. A nil Keys marshals as [].
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// MarshalJSON writes a nil Keys as [] rather than null.
func (s JWKS) MarshalJSON() ([]byte, error) {
	type plain JWKS
	if s.Keys == nil {
		s.Keys = []JWK{}
	}
	return json.Marshal(plain(s))
}

// jwkCurve names one supported curve in both spellings.
type jwkCurve struct {
	curve   elliptic.Curve
	rfc     string // RFC 7518 name, what ZTS sends with ?rfc=true
	openssl string // OpenSSL name, ZTS's default
	alg     string
}

var jwkCurves = []jwkCurve{
	{elliptic.P256(), "P-256", "prime256v1", "ES256"},
	{elliptic.P384(), "P-384", "secp384r1", "ES384"},
	{elliptic.P521(), "P-521", "secp521r1", "ES512"},
}

// JWKFromPublicKey returns pub as a signing JWK with the given kid: kty "RSA", alg
// "RS256", n and e for RSA keys; kty "EC", alg ES256/ES384/ES512, crv, and fixed-length x
// and y for ECDSA keys; use "sig" for both. With rfc true, crv is the RFC 7518 name
// (P-256, P-384, P-521), which go-jose, lestrrat jwx and zpe-updater require; with rfc
// false it is the OpenSSL name (prime256v1, secp384r1, secp521r1) that ZTS sends when
// /oauth2/keys is called without rfc=true. pub must pass CheckPublicKey.
func JWKFromPublicKey(pub crypto.PublicKey, kid string, rfc bool) (JWK, error) {
	if kid == "" {
		return JWK{}, errors.New("jwk: kid is required")
	}
	if err := CheckPublicKey(pub); err != nil {
		return JWK{}, fmt.Errorf("jwk: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return JWK{
			Kty: "RSA", Kid: kid, Alg: "RS256", Use: "sig",
			N: b64url.EncodeToString(k.N.Bytes()),
			E: b64url.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		}, nil
	case *ecdsa.PublicKey:
		for _, c := range jwkCurves {
			if c.curve != k.Curve {
				continue
			}
			point, err := k.Bytes() // 0x04 || X || Y, each coordinate fixed length
			if err != nil {
				return JWK{}, fmt.Errorf("jwk: %w", err)
			}
			size := (len(point) - 1) / 2
			crv := c.openssl
			if rfc {
				crv = c.rfc
			}
			return JWK{
				Kty: "EC", Kid: kid, Alg: c.alg, Use: "sig", Crv: crv,
				X: b64url.EncodeToString(point[1 : 1+size]),
				Y: b64url.EncodeToString(point[1+size:]),
			}, nil
		}
	}
	// Unreachable: CheckPublicKey admits only the cases above.
	return JWK{}, fmt.Errorf("jwk: %w: %T", ErrUnsupportedKey, pub)
}

// PublicKey decodes the key k describes. It accepts what Java ZTS servers send as well as
// RFC 7518's form: both curve spellings, big-endian integers of any length up to the
// key size, with leading zero bytes or without (ZTS writes x, y and n as minimal
// integers with ?rfc=true and as Java's signed two's-complement bytes without it, so a
// coordinate may be 31 or 33 bytes long), and it ignores "alg", because ZTS labels every
// EC key "ES256" whatever its curve. Ignoring alg costs nothing: VerifyAccessToken ties
// each algorithm to one key type and curve itself. It requires EC points on the curve, an
// RSA exponent that is odd, at least 3 and below 2^31, and a key that passes
// CheckPublicKey.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch k.Kty {
	case "RSA":
		n, errN := jwkInteger(k.N, MaxRSABits/8)
		e, errE := jwkInteger(k.E, 4)
		if errN != nil || errE != nil || len(n) == 0 || len(e) == 0 {
			return nil, fmt.Errorf("jwk %q: RSA n and e must be base64url big-endian integers (e below 2^32)", k.Kid)
		}
		exp := new(big.Int).SetBytes(e).Int64()
		if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
			return nil, fmt.Errorf("jwk %q: RSA exponent %d, want an odd value from 3 to 2^31-1", k.Kid, exp)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case "EC":
		c, ok := curveByName(k.Crv)
		if !ok {
			return nil, fmt.Errorf("jwk %q: curve %.20q, want P-256, P-384, P-521 or their OpenSSL names", k.Kid, k.Crv)
		}
		size := (c.curve.Params().BitSize + 7) / 8
		x, errX := jwkInteger(k.X, size)
		y, errY := jwkInteger(k.Y, size)
		if errX != nil || errY != nil {
			return nil, fmt.Errorf("jwk %q: EC x and y must be base64url integers of at most %d bytes", k.Kid, size)
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		ec, err := ecdsa.ParseUncompressedPublicKey(c.curve, point)
		if err != nil {
			return nil, fmt.Errorf("jwk %q: %v", k.Kid, err)
		}
		pub = ec
	default:
		return nil, fmt.Errorf("jwk %q: %w: kty %.20q", k.Kid, ErrUnsupportedKey, k.Kty)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("jwk %q: %w", k.Kid, err)
	}
	return pub, nil
}

// jwkInteger decodes an unpadded base64url big-endian integer and strips its leading
// zero bytes; the result may have at most max bytes.
func jwkInteger(s string, max int) ([]byte, error) {
	if len(s) > 4*(max+8)/3 {
		return nil, errors.New("integer too long")
	}
	b, err := b64url.DecodeString(s)
	if err != nil {
		return nil, err
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) > max {
		return nil, errors.New("integer too long")
	}
	return b, nil
}

func curveByName(name string) (jwkCurve, bool) {
	for _, c := range jwkCurves {
		if name == c.rfc || name == c.openssl {
			return c, true
		}
	}
	return jwkCurve{}, false
}

// StaticKeySet is a fixed KeySet: key id to public key. It is safe for concurrent reads;
// build it once and replace it whole rather than mutating it while in use.
type StaticKeySet map[string]crypto.PublicKey

// Key returns the key with id kid.
func (s StaticKeySet) Key(kid string) (crypto.PublicKey, bool) {
	k, ok := s[kid]
	return k, ok
}

// ParseJWKS reads a JWKS document ({"keys":[...]}, at most MaxJWKSLength bytes and 1000
// keys) into a key set for VerifyAccessToken and, through its Key method, for role
// tokens. Keys of types other than RSA and EC (oct, OKP, ...) and keys marked
// "use":"enc" are skipped, as RFC 7517 section 5 allows; an RSA or EC key that is
// malformed (see JWK.PublicKey), lacks a kid, or repeats another key's kid is an error,
// because a set that cannot be read exactly must not be half-trusted.
func ParseJWKS(b []byte) (StaticKeySet, error) {
	if len(b) > MaxJWKSLength {
		return nil, fmt.Errorf("jwks: %d bytes, limit %d", len(b), MaxJWKSLength)
	}
	members, err := DecodeJSONObject(b)
	if err != nil {
		return nil, fmt.Errorf("jwks: %v", err)
	}
	raw, ok := members["keys"]
	if !ok {
		return nil, errors.New(`jwks: no "keys" member`)
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf(`jwks: "keys": %v`, err)
	}
	if len(keys) > maxJWKSKeys {
		return nil, fmt.Errorf("jwks: %d keys, limit %d", len(keys), maxJWKSKeys)
	}
	set := make(StaticKeySet, len(keys))
	for i, rawKey := range keys {
		k, err := decodeJWK(rawKey)
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d: %v", i, err)
		}
		if (k.Kty != "RSA" && k.Kty != "EC") || k.Use == "enc" {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf("jwks: key %d: no kid", i)
		}
		if _, dup := set[k.Kid]; dup {
			return nil, fmt.Errorf("jwks: kid %q appears twice", k.Kid)
		}
		pub, err := k.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		}
		set[k.Kid] = pub
	}
	return set, nil
}

// decodeJWK reads one key by exact member names; members other than the JWK fields
// (x5c, key_ops, ...) are ignored.
func decodeJWK(raw json.RawMessage) (JWK, error) {
	members, err := DecodeJSONObject(raw)
	if err != nil {
		return JWK{}, err
	}
	var k JWK
	for name, dst := range map[string]*string{
		"kty": &k.Kty, "kid": &k.Kid, "alg": &k.Alg, "use": &k.Use, "crv": &k.Crv,
		"x": &k.X, "y": &k.Y, "n": &k.N, "e": &k.E,
	} {
		if v, ok := members[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return JWK{}, fmt.Errorf("%q: %v", name, err)
			}
		}
	}
	return k, nil
}
