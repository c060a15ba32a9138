package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
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
// The JWS itself is read and written by the athenz package (ParseJWS, SignJWS), with the
// same rules as every other JWS in the module.

// DefaultBundleKeyID is the key id bundles are signed under when BundleOptions.KeyID is
// empty: the id OPA gives a key passed with --verification-key.
const DefaultBundleKeyID = "default"

// signaturesFile is the name of the signatures file in a bundle.
const signaturesFile = ".signatures.json"

// fileHashAlgorithm is the digest WriteBundle lists files with, named as OPA names it.
const fileHashAlgorithm = "SHA-256"

// maxSignatureJWSLength bounds the bundle signature JWS: a listed file takes about 250
// bytes, so 4 MiB lists some 16,000 files.
const maxSignatureJWSLength = 4 << 20

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
	return athenz.JWSAlgorithm(pub)
}

// signaturesConfig is the content of .signatures.json.
type signaturesConfig struct {
	Signatures []string `json:"signatures"`
	// Plugin names a custom OPA verifier; only the default ("" or "_default") is supported.
	Plugin string `json:"plugin,omitempty"`
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
	if _, err := SigningAlgorithm(key.Public()); err != nil {
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
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	if k, ok := key.(*ecdsa.PrivateKey); ok {
		key = rfc6979Signer{k}
	}
	jws, err := athenz.SignJWS(key, athenz.JWSHeader{Kid: keyID, Typ: "JWT"}, body)
	if err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	return json.MarshalIndent(signaturesConfig{Signatures: []string{jws}}, "", " ")
}

// rfc6979Signer signs with an in-memory ECDSA key deterministically (RFC 6979), whatever
// randomness it is given, so that the same bundle signs to the same bytes. Other keys need
// no wrapper: RSA PKCS #1 v1.5 is deterministic, and hardware or KMS signers keep their
// own randomness.
type rfc6979Signer struct{ *ecdsa.PrivateKey }

// Sign signs digest with no randomness, which ecdsa.PrivateKey.Sign takes to mean RFC 6979.
func (s rfc6979Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.PrivateKey.Sign(nil, digest, opts)
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
	jws, err := athenz.ParseJWS(sc.Signatures[0], maxSignatureJWSLength, athenz.JWSAlgorithms()...)
	if err != nil {
		return fail("%s: %v", signaturesFile, err)
	}
	payload, err := decodeSignaturePayload(jws.Payload)
	if err != nil {
		return fail("JWS payload: %v", err)
	}
	header := jws.Header
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
	if err := jws.Verify(pub); err != nil {
		return fail("JWS signature with key %q: %v", keyID, err)
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

// decodeSignaturePayload reads a signature's payload by exact member names (files, keyid,
// scope; each file's name, hash and algorithm), refusing duplicated members anywhere, so
// that no other JSON reader can see different files or keys in the same signature.
// Other members, such as the iat and iss OPA may write, are ignored.
func decodeSignaturePayload(b []byte) (*signaturePayload, error) {
	members, err := athenz.DecodeJSONObject(b)
	if err != nil {
		return nil, err
	}
	p := new(signaturePayload)
	var files []json.RawMessage
	if err := athenz.DecodeJSONMembers(members, map[string]any{"files": &files, "keyid": &p.KeyID, "scope": &p.Scope}); err != nil {
		return nil, err
	}
	for i, raw := range files {
		m, err := athenz.DecodeJSONObject(raw)
		if err != nil {
			return nil, fmt.Errorf("files[%d]: %v", i, err)
		}
		var f signedFile
		if err := athenz.DecodeJSONMembers(m, map[string]any{"name": &f.Name, "hash": &f.Hash, "algorithm": &f.Algorithm}); err != nil {
			return nil, fmt.Errorf("files[%d]: %v", i, err)
		}
		p.Files = append(p.Files, f)
	}
	return p, nil
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
