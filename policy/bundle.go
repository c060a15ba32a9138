package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// The OPA bundle (`athenz-mesh policy compile`), a .tar.gz holding, at these paths:
//
//	.manifest          {"revision": <Compiled.Revision>, "roots": ["athenz", "envoy"], "rego_version": 1}
//	data.json          {"athenz": <Compiled>}: the decision data, at data.athenz
//	athenz/authz.rego  package athenz.authz: data.athenz.authz.allow and .decision
//	envoy/authz.rego   package envoy.authz: data.envoy.authz.allow and .result
//	.signatures.json   when signed: OPA's bundle signature (a JWS over every other file)
//
// Compiled must never gain a top-level "authz" key: data.athenz.authz is the Rego package.
// Entries are sorted, owned by uid 0, mode 0644, with a fixed mtime, so the same snapshot
// and key give the same bytes.

// Bundle file names.
const (
	manifestFile = ".manifest"
	dataFile     = "data.json"
)

// bundleRoots are the manifest roots: the bundle owns data.athenz and data.envoy, so OPA
// refuses to mix it with another bundle that claims them.
var bundleRoots = []string{"athenz", "envoy"}

// bundleModTime is the mtime of every entry (a fixed instant, for reproducible bytes).
var bundleModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// bundleRegoVersion is the Rego syntax version the bundle's modules are written in.
const bundleRegoVersion = 1

// BundleOptions tunes WriteBundle. The zero value writes an unsigned bundle.
type BundleOptions struct {
	// SigningKey, when set, signs the bundle (.signatures.json) with the JWS algorithm
	// SigningAlgorithm names for its public key. OPA must then be told that algorithm:
	// `opa run --verification-key pub.pem --signing-alg ES256` for an ECDSA P-256 key (OPA
	// assumes RS256). Nil: unsigned.
	SigningKey crypto.Signer
	// KeyID names the key in the signature (JWS "kid" header and "keyid" claim). Empty:
	// DefaultBundleKeyID, the id OPA gives --verification-key.
	KeyID string
	// Scope is the signature's "scope" claim, which OPA (--scope) and ReadBundle
	// (ReadOptions.Scope) compare exactly. Empty: no scope.
	Scope string
}

// bundleManifest is the .manifest document.
type bundleManifest struct {
	Revision    string   `json:"revision"`
	Roots       []string `json:"roots,omitempty"`
	RegoVersion *int     `json:"rego_version,omitempty"`
	// Metadata is free-form; written empty, accepted on read.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// bundleData is the data.json document.
type bundleData struct {
	Athenz *Compiled `json:"athenz"`
}

// WriteBundle writes c as an OPA bundle (.tar.gz) to w, signed when opts.SigningKey is
// set. See the layout above; ReadBundle reads it back and real OPA loads it.
func WriteBundle(w io.Writer, c *Compiled, opts BundleOptions) error {
	files, err := bundleFiles(c)
	if err != nil {
		return err
	}
	if opts.SigningKey != nil {
		keyID := opts.KeyID
		if keyID == "" {
			keyID = DefaultBundleKeyID
		}
		sig, err := signFiles(files, opts.SigningKey, keyID, opts.Scope)
		if err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		files[signaturesFile] = sig
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, name := range bundleSortedKeys(files) {
		content := files[name]
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     0o644,
			Size:     int64(len(content)),
			ModTime:  bundleModTime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write bundle: %s: %w", name, err)
		}
		if _, err := tw.Write(content); err != nil {
			return fmt.Errorf("write bundle: %s: %w", name, err)
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

// bundleFiles returns every file of c's bundle except the signatures, by bundle path.
func bundleFiles(c *Compiled) (map[string][]byte, error) {
	if c == nil {
		return nil, errors.New("write bundle: nil snapshot")
	}
	version := bundleRegoVersion
	manifest, err := json.Marshal(bundleManifest{Revision: c.Revision, Roots: bundleRoots, RegoVersion: &version})
	if err != nil {
		return nil, fmt.Errorf("write bundle: manifest: %w", err)
	}
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	if err := enc.Encode(bundleData{Athenz: c}); err != nil {
		return nil, fmt.Errorf("write bundle: data.json: %w", err)
	}
	files := RegoModules()
	files[manifestFile] = manifest
	files[dataFile] = data.Bytes()
	return files, nil
}
