package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"path"
	"sort"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// OPA bundle signing, written from OPA's documented format (v1/bundle/sign.go, verify.go,
// hash.go) without importing OPA: .signatures.json is {"signatures": ["<compact JWS>"]};
// the JWS payload is {"files": [{"name", "hash", "algorithm"}], "keyid", "scope"}; a file's
// hash is the hex digest of its bytes, except data.json and .manifest, whose hash is taken
// over OPA's canonical walk of the parsed JSON (objects with sorted keys, so that
// formatting does not matter). OPA verifies with the key named by its configured key id
// ("default" unless --verification-key-id says otherwise) and the algorithm given by
// --signing-alg (RS256 unless said otherwise), so ECDSA bundles need --signing-alg ES256.

// DefaultBundleKeyID is the key id bundles are signed under when BundleOptions.KeyID is
// empty: the id OPA gives a key passed with --verification-key.
const DefaultBundleKeyID = "default"

// signaturesFile is the name of the signatures file in a bundle.
const signaturesFile = ".signatures.json"

// fileHashAlgorithm is the digest WriteBundle lists files with, named as OPA names it.
const fileHashAlgorithm = "SHA-256"

// ParseSigningKey parses a PEM private key for bundle signing: "EC PRIVATE KEY", "RSA
// PRIVATE KEY" or "PRIVATE KEY" (PKCS#8), ECDSA on P-256 (ES256), P-384 (ES384) or P-521
// (ES512), or RSA of 2048 to 8192 bits (RS256).
func ParseSigningKey(pemBytes []byte) (crypto.Signer, error) {
	key, err := athenz.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("bundle signing key: %w", err)
	}
	if _, err := SigningAlgorithm(key.Public()); err != nil {
		return nil, fmt.Errorf("bundle signing key: %w", err)
	}
	return key, nil
}

// ParseVerificationKey parses a PEM public key for bundle verification: "PUBLIC KEY"
// (PKIX) or "RSA PUBLIC KEY" (PKCS#1), of the kinds ParseSigningKey accepts. It is the
// file given to `opa run --verification-key`.
func ParseVerificationKey(pemBytes []byte) (crypto.PublicKey, error) {
	pub, err := athenz.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("bundle verification key: %w", err)
	}
	if _, err := SigningAlgorithm(pub); err != nil {
		return nil, fmt.Errorf("bundle verification key: %w", err)
	}
	return pub, nil
}

// SigningAlgorithm returns the JWS algorithm bundles are signed with for a key: ES256,
// ES384 or ES512 for ECDSA P-256, P-384 or P-521, RS256 for RSA. It is the value to give
// OPA as --signing-alg (or signing.algorithm in a keys config).
func SigningAlgorithm(pub crypto.PublicKey) (string, error) {
	if err := athenz.CheckPublicKey(pub); err != nil {
		return "", err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
	}
	return "", fmt.Errorf("%w: %T", athenz.ErrUnsupportedKey, pub)
}

// jwsHash returns the digest a JWS algorithm signs with.
func jwsHash(alg string) crypto.Hash {
	switch alg {
	case "ES384":
		return crypto.SHA384
	case "ES512":
		return crypto.SHA512
	default:
		return crypto.SHA256
	}
}

// signaturesConfig is the content of .signatures.json.
type signaturesConfig struct {
	Signatures []string `json:"signatures"`
	// Plugin names a custom OPA verifier; only the default ("" or "_default") is supported.
	Plugin string `json:"plugin,omitempty"`
}

// jwsHeader is the protected header of a bundle signature.
type jwsHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid,omitempty"`
	Typ  string   `json:"typ,omitempty"`
	Crit []string `json:"crit,omitempty"`
}

// signaturePayload is the JWS payload of a bundle signature.
type signaturePayload struct {
	Files []signedFile `json:"files"`
	// KeyID is OPA's deprecated "keyid" claim, kept for older verifiers.
	KeyID string `json:"keyid,omitempty"`
	Scope string `json:"scope,omitempty"`
}

// signedFile is one file listed in a bundle signature.
type signedFile struct {
	Name      string `json:"name"`
	Hash      string `json:"hash"`
	Algorithm string `json:"algorithm"`
}

// signFiles returns the .signatures.json content for files (bundle path → bytes, without
// the signatures file itself).
func signFiles(files map[string][]byte, key crypto.Signer, keyID, scope string) ([]byte, error) {
	alg, err := SigningAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	payload := signaturePayload{KeyID: keyID, Scope: scope}
	for _, name := range names {
		sum, err := fileDigest(name, files[name], fileHashAlgorithm)
		if err != nil {
			return nil, err
		}
		payload.Files = append(payload.Files, signedFile{Name: name, Hash: hex.EncodeToString(sum), Algorithm: fileHashAlgorithm})
	}
	header, err := json.Marshal(jwsHeader{Alg: alg, Kid: keyID, Typ: "JWT"})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(body)
	sig, err := jwsSign(key, alg, []byte(signingInput))
	if err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	return json.MarshalIndent(signaturesConfig{Signatures: []string{signingInput + "." + b64.EncodeToString(sig)}}, "", " ")
}

// jwsSign signs input for alg. ECDSA signatures are the raw R||S that JWS requires. An
// in-memory ECDSA key signs deterministically (RFC 6979), so the same bundle signs to the
// same bytes; other signers get crypto/rand.
func jwsSign(key crypto.Signer, alg string, input []byte) ([]byte, error) {
	h := jwsHash(alg).New()
	h.Write(input)
	digest := h.Sum(nil)
	var random io.Reader = rand.Reader
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		random = nil
	}
	sig, err := key.Sign(random, digest, jwsHash(alg))
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return sig, nil
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 {
		return nil, errors.New("ECDSA signer returned a malformed signature")
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	raw := make([]byte, 2*size)
	rs.R.FillBytes(raw[:size])
	rs.S.FillBytes(raw[size:])
	return raw, nil
}

// jwsVerify checks a raw JWS signature over input with pub.
func jwsVerify(pub crypto.PublicKey, alg string, input, sig []byte) bool {
	h := jwsHash(alg).New()
	h.Write(input)
	digest := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// verifySignatures checks .signatures.json against keys and the bundle's files (bundle
// path → bytes, without the signatures file), and returns the id of the key that signed.
// Every file must be listed with a matching hash and every listed file must be present.
// All errors wrap ErrBundleSignature.
func verifySignatures(raw []byte, files map[string][]byte, opts *ReadOptions) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrBundleSignature, fmt.Sprintf(format, args...))
	}
	var sc signaturesConfig
	if err := decodeJSONStrict(raw, &sc); err != nil {
		return fail("%s: %v", signaturesFile, err)
	}
	if sc.Plugin != "" && sc.Plugin != "_default" { // opa build writes "_default"
		return fail("%s: signature plugin %q is not supported; only OPA's default JWS format is", signaturesFile, sc.Plugin)
	}
	if len(sc.Signatures) != 1 {
		return fail("%s: want exactly one JWS, found %d", signaturesFile, len(sc.Signatures))
	}
	parts := strings.Split(sc.Signatures[0], ".")
	if len(parts) != 3 {
		return fail("%s: the signature is not a compact JWS (header.payload.signature)", signaturesFile)
	}
	b64 := base64.RawURLEncoding
	headerJSON, err1 := b64.DecodeString(parts[0])
	payloadJSON, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return fail("%s: JWS is not base64url: %v", signaturesFile, err)
	}
	var header jwsHeader
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		return fail("JWS header: %v", err)
	}
	if len(header.Crit) > 0 {
		return fail("JWS header has critical extensions %q, which are not supported", header.Crit)
	}
	var payload signaturePayload
	if err := json.Unmarshal(payloadJSON, &payload); err != nil {
		return fail("JWS payload: %v", err)
	}
	keyID := header.Kid
	if keyID == "" {
		keyID = payload.KeyID
	}
	if header.Kid != "" && payload.KeyID != "" && header.Kid != payload.KeyID {
		return fail("JWS header kid %q and payload keyid %q disagree", header.Kid, payload.KeyID)
	}
	if keyID == "" {
		return fail("the signature names no key (no kid header, no keyid claim)")
	}
	pub, ok := opts.VerificationKeys[keyID]
	if !ok {
		return fail("signed with key id %q, which is not a configured verification key (have %s)", keyID, strings.Join(bundleSortedKeys(opts.VerificationKeys), ", "))
	}
	alg, err := SigningAlgorithm(pub)
	if err != nil {
		return fail("verification key %q: %v", keyID, err)
	}
	if header.Alg != alg {
		return fail("JWS algorithm %q does not match verification key %q (want %s)", header.Alg, keyID, alg)
	}
	if !jwsVerify(pub, alg, []byte(parts[0]+"."+parts[1]), sig) {
		return fail("JWS signature does not verify with key %q", keyID)
	}
	if payload.Scope != opts.Scope {
		return fail("signature scope %q, want %q", payload.Scope, opts.Scope)
	}
	listed := make(map[string]bool, len(payload.Files))
	for _, f := range payload.Files {
		if listed[f.Name] {
			return fail("file %q is listed twice in the signature", f.Name)
		}
		listed[f.Name] = true
		content, ok := files[f.Name]
		if !ok {
			return fail("file %q is listed in the signature but missing from the bundle", f.Name)
		}
		want, err := hex.DecodeString(f.Hash)
		if err != nil {
			return fail("file %q: hash is not hex", f.Name)
		}
		got, err := fileDigest(f.Name, content, f.Algorithm)
		if err != nil {
			return fail("file %q: %v", f.Name, err)
		}
		if !bytes.Equal(want, got) {
			return fail("file %q: digest mismatch (signed %x, found %x)", f.Name, want, got)
		}
	}
	for _, name := range bundleSortedKeys(files) {
		if !listed[name] {
			return fail("file %q is in the bundle but not in the signature", name)
		}
	}
	return keyID, nil
}

// fileDigest hashes a bundle file as OPA does: structured documents (data.json and
// .manifest, by base name) over the canonical walk of their parsed JSON, everything else
// over its bytes. MD5 and SHA-1, which OPA also accepts, are refused as broken.
func fileDigest(name string, content []byte, algorithm string) ([]byte, error) {
	var h hash.Hash
	switch algorithm {
	case "SHA-256":
		h = sha256.New()
	case "SHA-384":
		h = sha512.New384()
	case "SHA-512":
		h = sha512.New()
	default:
		return nil, fmt.Errorf("hash algorithm %q is not supported (want SHA-256, SHA-384 or SHA-512)", algorithm)
	}
	if base := path.Base(name); base != "data.json" && base != ".manifest" {
		h.Write(content)
		return h.Sum(nil), nil
	}
	v, err := parseJSONNumbers(content)
	if err != nil {
		return nil, err
	}
	if err := opaCanonicalWalk(h, v); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// parseJSONNumbers parses one JSON document, keeping numbers as written (json.Number), as
// OPA does before hashing.
func parseJSONNumbers(b []byte) (any, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("parse JSON: data after the document")
	}
	return v, nil
}

// opaCanonicalWalk writes OPA's canonical form of a parsed JSON value to w: objects as "{",
// each key (sorted) and value joined by ":" and separated by ",", then "}"; arrays
// likewise with "[" "]"; scalars as encoding/json writes them without HTML escaping.
func opaCanonicalWalk(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	scalar := func(x any) error {
		buf.Reset()
		if err := enc.Encode(x); err != nil {
			return err
		}
		_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch x := v.(type) {
		case map[string]any:
			io.WriteString(w, "{")
			for i, k := range bundleSortedKeys(x) {
				if i > 0 {
					io.WriteString(w, ",")
				}
				if err := scalar(k); err != nil {
					return err
				}
				io.WriteString(w, ":")
				if err := walk(x[k]); err != nil {
					return err
				}
			}
			io.WriteString(w, "}")
		case []any:
			io.WriteString(w, "[")
			for i, e := range x {
				if i > 0 {
					io.WriteString(w, ",")
				}
				if err := walk(e); err != nil {
					return err
				}
			}
			io.WriteString(w, "]")
		default:
			return scalar(x)
		}
		return nil
	}
	return walk(v)
}

// bundleSortedKeys returns m's keys in byte order.
func bundleSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
