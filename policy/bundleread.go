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
	"regexp"
	"strings"
)

// DefaultMaxBundleBytes is the size limit ReadBundle applies when ReadOptions.MaxBytes is
// zero, to the compressed bundle and, separately, to the uncompressed archive.
const DefaultMaxBundleBytes = 256 << 20

// Errors that ReadBundle wraps, for callers that treat them differently (a bundle that is
// not signed, or whose signature fails, is an attack or a misconfiguration; a bundle that is
// malformed is a bug or corruption). Every ReadBundle error wraps exactly one of them.
var (
	// ErrBundleInvalid: not a well-formed bundle of a Compiled snapshot.
	ErrBundleInvalid = errors.New("invalid bundle")
	// ErrBundleTooLarge: the bundle exceeds ReadOptions.MaxBytes.
	ErrBundleTooLarge = errors.New("bundle too large")
	// ErrBundleUnsigned: verification keys are configured but the bundle has no signature.
	ErrBundleUnsigned = errors.New("bundle is not signed")
	// ErrBundleSignature: the signature, its key, or a file digest does not check out.
	ErrBundleSignature = errors.New("bundle signature check failed")
)

// ReadOptions tunes ReadBundle. The zero value reads any well-formed bundle, signed or not,
// up to DefaultMaxBundleBytes, without checking signatures.
type ReadOptions struct {
	// VerificationKeys maps key ids to the public keys a bundle may be signed with (several
	// during a key rotation). When non-empty, the bundle must be signed by the key its
	// signature names (JWS "kid", else the "keyid" claim), with that key's algorithm (see
	// SigningAlgorithm), covering exactly the bundle's files. Empty: signatures are not
	// checked, and a signed bundle reads as Signed with no KeyID.
	VerificationKeys map[string]crypto.PublicKey
	// Scope is the "scope" claim the signature must carry, compared exactly as OPA does.
	// Empty: the signature must have no scope.
	Scope string
	// MaxBytes limits both the compressed bundle and its uncompressed archive (guarding
	// against gzip bombs). Zero or negative: DefaultMaxBundleBytes.
	MaxBytes int64
}

// Bundle is a bundle read by ReadBundle.
type Bundle struct {
	// Compiled is the snapshot from data.json (data.athenz), checked to decode exactly and
	// to be internally consistent (see ReadBundle).
	Compiled *Compiled
	// Revision is the manifest's revision, equal to Compiled.Revision.
	Revision string
	// Signed reports that the bundle carries .signatures.json. It was verified only when
	// ReadOptions had verification keys; KeyID is then the key that signed it.
	Signed bool
	// KeyID is the id of the verification key that checked the signature; empty when the
	// signature was not checked.
	KeyID string
	// Rego holds the bundle's Rego modules by bundle path; the native evaluator does not
	// use them, OPA does.
	Rego map[string][]byte
}

// ReadBundle reads and checks a bundle written by WriteBundle (or re-packed by `opa build`,
// whose entry names start with "/"). It refuses, with an error naming the problem:
//   - archives over opts.MaxBytes, compressed or not;
//   - entries that are not regular files or directories (symlinks, hard links, devices),
//     paths with "..", ".", empty segments, backslashes or a second leading "/", and
//     duplicate paths;
//   - files other than .manifest, data.json, .signatures.json and *.rego, and a missing
//     .manifest or data.json (OPA would load a stray data file into data.*; the native
//     evaluator would not, so the two would disagree);
//   - with verification keys: a missing signature, a signature by an unknown key id, with
//     the wrong algorithm or scope, or that does not verify, a file whose digest differs
//     from the signed one, a file the signature does not list and a listed file that is
//     missing;
//   - a manifest whose roots do not cover data.athenz or whose revision differs from the
//     snapshot's;
//   - a data.json that is not exactly {"athenz": <Compiled>} as WriteBundle writes it
//     (unknown or differently-cased keys, nulls or empty lists where the writer omits
//     the key), or whose indexes are inconsistent (null entries, effects other than
//     ALLOW and DENY, glob expressions that do not match their globs, assertions filed
//     under the wrong key, duplicate assertion ids in a domain).
//
// The last two make OPA and the native evaluator see the same data.
func ReadBundle(r io.Reader, opts ReadOptions) (*Bundle, error) {
	limit := opts.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBundleBytes
	}
	files, err := readArchive(r, limit)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Rego: make(map[string][]byte)}
	sig, signed := files[signaturesFile]
	delete(files, signaturesFile)
	b.Signed = signed
	for name, content := range files {
		switch {
		case name == manifestFile, name == dataFile:
		case strings.HasSuffix(name, ".rego"):
			b.Rego[name] = content
		default:
			return nil, invalidf("unexpected file %q: a bundle holds only .manifest, data.json, .signatures.json and .rego files", name)
		}
	}
	if len(opts.VerificationKeys) > 0 {
		if !signed {
			return nil, fmt.Errorf("read bundle: %w: no %s, but verification keys are configured", ErrBundleUnsigned, signaturesFile)
		}
		if b.KeyID, err = verifySignatures(sig, files, &opts); err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
	}
	manifest, err := readManifest(files)
	if err != nil {
		return nil, err
	}
	b.Revision = manifest.Revision
	if b.Compiled, err = readData(files); err != nil {
		return nil, err
	}
	if b.Compiled.Revision != manifest.Revision {
		return nil, invalidf("manifest revision %q differs from data.json revision %q", manifest.Revision, b.Compiled.Revision)
	}
	return b, nil
}

// invalidf returns an ErrBundleInvalid error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("read bundle: %w: %s", ErrBundleInvalid, fmt.Sprintf(format, args...))
}

// capReader reads at most n bytes from r and records whether r had more.
type capReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var probe [1]byte
		if n, _ := io.ReadFull(c.r, probe[:]); n > 0 {
			c.exceeded = true
			return 0, ErrBundleTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// readArchive reads a .tar.gz into bundle path → content, enforcing limit on both the
// compressed and the uncompressed stream and refusing unsafe or duplicate entries.
func readArchive(r io.Reader, limit int64) (map[string][]byte, error) {
	compressed := &capReader{r: r, left: limit}
	uncompressed := &capReader{left: limit}
	tooLarge := func(err error) error {
		switch {
		case compressed.exceeded:
			return fmt.Errorf("read bundle: %w: more than %d compressed bytes", ErrBundleTooLarge, limit)
		case uncompressed.exceeded:
			return fmt.Errorf("read bundle: %w: more than %d bytes uncompressed", ErrBundleTooLarge, limit)
		}
		return err
	}
	gz, err := gzip.NewReader(compressed)
	if err != nil {
		return nil, tooLarge(invalidf("not a gzip stream: %v", err))
	}
	uncompressed.r = gz
	tr := tar.NewReader(uncompressed)
	files := make(map[string][]byte)
	dirs := make(map[string]bool)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, tooLarge(invalidf("read archive: %v", err))
		}
		name, err := bundlePath(hdr.Name, hdr.Typeflag == tar.TypeDir)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeDir:
			if dirs[name] || files[name] != nil {
				return nil, invalidf("duplicate entry %q", hdr.Name)
			}
			dirs[name] = true
			continue
		case tar.TypeSymlink:
			return nil, invalidf("entry %q is a symbolic link (to %q); bundles hold regular files only", hdr.Name, hdr.Linkname)
		case tar.TypeLink:
			return nil, invalidf("entry %q is a hard link (to %q); bundles hold regular files only", hdr.Name, hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return nil, invalidf("entry %q is a device or FIFO; bundles hold regular files only", hdr.Name)
		default:
			return nil, invalidf("entry %q has unsupported tar type %q; bundles hold regular files only", hdr.Name, hdr.Typeflag)
		}
		if _, dup := files[name]; dup || dirs[name] {
			return nil, invalidf("duplicate entry %q", hdr.Name)
		}
		if hdr.Size > uncompressed.left {
			return nil, fmt.Errorf("read bundle: %w: entry %q (%d bytes) takes the archive past %d bytes uncompressed", ErrBundleTooLarge, hdr.Name, hdr.Size, limit)
		}
		content := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, content); err != nil {
			return nil, tooLarge(invalidf("read %q: %v", hdr.Name, err))
		}
		files[name] = content
	}
	return files, nil
}

// bundlePath checks an entry name and returns its bundle path. One leading "/" is
// dropped (OPA writes "/data.json" and reads it as "data.json"); directory names may end
// in "/". Anything that could name a place outside the bundle root, or two names for one
// file, is refused.
func bundlePath(name string, dir bool) (string, error) {
	p := strings.TrimPrefix(name, "/")
	if dir {
		p = strings.TrimSuffix(p, "/")
	}
	bad := func(why string) (string, error) {
		return "", invalidf("unsafe entry path %q: %s", name, why)
	}
	switch {
	case p == "":
		return bad("empty")
	case strings.HasPrefix(p, "/"):
		return bad("absolute path")
	case strings.Contains(p, "\\"):
		return bad("backslash")
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return bad("control character")
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return bad("empty path segment")
		case ".", "..":
			return bad(fmt.Sprintf("%q segment", seg))
		}
	}
	return p, nil
}

// readManifest decodes .manifest and checks its roots.
func readManifest(files map[string][]byte) (*bundleManifest, error) {
	raw, ok := files[manifestFile]
	if !ok {
		return nil, invalidf("no %s", manifestFile)
	}
	var m bundleManifest
	if err := decodeJSONStrict(raw, &m); err != nil {
		return nil, invalidf("%s: %v", manifestFile, err)
	}
	if m.Roots != nil {
		covered := false
		for _, root := range m.Roots {
			if root := strings.Trim(root, "/"); root == "" || root == "athenz" {
				covered = true
			}
		}
		if !covered {
			return nil, invalidf("%s: roots %q do not include \"athenz\", where the data lives", manifestFile, m.Roots)
		}
	}
	return &m, nil
}

// readData decodes data.json strictly and checks that it is exactly what WriteBundle
// would write for the snapshot it decodes to.
func readData(files map[string][]byte) (*Compiled, error) {
	raw, ok := files[dataFile]
	if !ok {
		return nil, invalidf("no %s", dataFile)
	}
	var d bundleData
	if err := decodeJSONStrict(raw, &d); err != nil {
		return nil, invalidf("%s: %v", dataFile, err)
	}
	if d.Athenz == nil {
		return nil, invalidf("%s: no \"athenz\" document", dataFile)
	}
	if err := validateCompiled(d.Athenz); err != nil {
		return nil, invalidf("%s: %v", dataFile, err)
	}
	again, err := json.Marshal(d)
	if err != nil {
		return nil, invalidf("%s: %v", dataFile, err)
	}
	got, err1 := parseJSONNumbers(raw)
	want, err2 := parseJSONNumbers(again)
	if err := errors.Join(err1, err2); err != nil {
		return nil, invalidf("%s: %v", dataFile, err)
	}
	if where := jsonDifference(got, want); where != "" {
		return nil, invalidf("%s: %s differs from the snapshot it decodes to (a key in another case, or a null or empty value the writer omits); OPA and the native evaluator would see different data", dataFile, where)
	}
	return d.Athenz, nil
}

// decodeJSONStrict decodes exactly one JSON document into v, refusing unknown fields.
func decodeJSONStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON document")
	}
	return nil
}

// jsonDifference returns where two parsed JSON values first differ, as a path such as
// athenz["domains"]["x"], or "" when they are equal. Paths are built only on a difference.
func jsonDifference(a, b any) string {
	path, differ := jsonDiff(a, b)
	if !differ {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("the document")
	for i := len(path) - 1; i >= 0; i-- {
		sb.WriteString(path[i])
	}
	return sb.String()
}

// jsonDiff reports whether a and b differ and, if so, the path to the first difference,
// innermost element first.
func jsonDiff(a, b any) ([]string, bool) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return nil, true
		}
		for _, k := range bundleSortedKeys(x) {
			yk, ok := y[k]
			if !ok {
				return []string{fmt.Sprintf("[%q]", k)}, true
			}
			if path, differ := jsonDiff(x[k], yk); differ {
				return append(path, fmt.Sprintf("[%q]", k)), true
			}
		}
		if len(y) != len(x) {
			for _, k := range bundleSortedKeys(y) {
				if _, ok := x[k]; !ok {
					return []string{fmt.Sprintf("[%q]", k)}, true
				}
			}
		}
		return nil, false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return nil, true
		}
		for i := range x {
			if path, differ := jsonDiff(x[i], y[i]); differ {
				return append(path, fmt.Sprintf("[%d]", i)), true
			}
		}
		return nil, false
	default:
		return nil, a != b
	}
}

// validateCompiled checks the invariants both evaluators rely on and that decoding alone
// does not give.
func validateCompiled(c *Compiled) error {
	for _, name := range bundleSortedKeys(c.Domains) {
		d := c.Domains[name]
		if d == nil {
			return fmt.Errorf("domain %q is null", name)
		}
		ids := make(map[int]bool)
		check := func(a *CompiledAssertion, where string) error {
			if a == nil {
				return fmt.Errorf("domain %q: %s: null assertion", name, where)
			}
			if ids[a.ID] {
				return fmt.Errorf("domain %q: assertion id %d appears twice", name, a.ID)
			}
			ids[a.ID] = true
			if a.Effect != Allow && a.Effect != Deny {
				return fmt.Errorf("domain %q: assertion %d: effect %q, want ALLOW or DENY", name, a.ID, a.Effect)
			}
			for _, f := range []struct{ field, glob, re string }{
				{"role", a.Role, a.RoleRe},
				{"action", a.Action, a.ActionRe},
				{"resource", a.Resource, a.ResourceRe},
			} {
				want := ""
				if hasGlob(f.glob) {
					want = globRegexp(f.glob)
				}
				if f.re != want {
					return fmt.Errorf("domain %q: assertion %d: %s_re %q does not match %s %q (want %q)", name, a.ID, f.field, f.re, f.field, f.glob, want)
				}
				if _, err := regexp.Compile(f.re); err != nil {
					return fmt.Errorf("domain %q: assertion %d: %s_re: %v", name, a.ID, f.field, err)
				}
			}
			return nil
		}
		for _, action := range bundleSortedKeys(d.Actions) {
			ai := d.Actions[action]
			if ai == nil {
				return fmt.Errorf("domain %q: actions[%q] is null", name, action)
			}
			for _, resource := range bundleSortedKeys(ai.Exact) {
				for _, a := range ai.Exact[resource] {
					if err := check(a, fmt.Sprintf("actions[%q].exact[%q]", action, resource)); err != nil {
						return err
					}
					if a.Action != action || a.Resource != resource || a.ResourceRe != "" {
						return fmt.Errorf("domain %q: assertion %d (%s on %s) is filed under actions[%q].exact[%q]", name, a.ID, a.Action, a.Resource, action, resource)
					}
				}
			}
			for _, a := range ai.Globs {
				if err := check(a, fmt.Sprintf("actions[%q].globs", action)); err != nil {
					return err
				}
				if a.Action != action || a.ResourceRe == "" {
					return fmt.Errorf("domain %q: assertion %d (%s on %s) is filed under actions[%q].globs", name, a.ID, a.Action, a.Resource, action)
				}
			}
		}
		for _, a := range d.GlobActions {
			if err := check(a, "glob_actions"); err != nil {
				return err
			}
			if a.ActionRe == "" {
				return fmt.Errorf("domain %q: assertion %d (action %q) is filed under glob_actions without a glob", name, a.ID, a.Action)
			}
		}
	}
	return nil
}
