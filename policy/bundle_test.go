package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Test keys are generated once per test binary (RSA generation is slow under -race).
var (
	testKeysOnce sync.Once
	testECKey    *ecdsa.PrivateKey
	testEC2Key   *ecdsa.PrivateKey
	testRSAKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) (ec, ec2 *ecdsa.PrivateKey, rs *rsa.PrivateKey) {
	t.Helper()
	testKeysOnce.Do(func() {
		var err error
		if testECKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if testEC2Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if testRSAKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testECKey, testEC2Key, testRSAKey
}

func publicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func privatePEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// smallCompiled is a valid snapshot with one domain, enough to exercise the bundle code.
func smallCompiled() *Compiled {
	c := &Compiled{
		Revision: "rev-1",
		Domains: map[string]*CompiledDomain{
			"sports": {
				Roles:    []string{"reader"},
				Members:  map[string]map[string]int64{"user.joe": {"reader": 0}},
				Prefixes: []PrefixMember{{Prefix: "sports.", Role: "reader"}},
			},
		},
		Mapping: &Mapping{DefaultDomain: "sports"},
	}
	fileAssertions(c.Domains["sports"],
		mkAssertion(0, "p", "reader", "read", "sports:doc<&>", Allow),
		mkAssertion(1, "p", "read*", "get", "sports:*", Deny),
	)
	return c
}

// assertion builds a compiled assertion with its glob expressions.
func mkAssertion(id int, policy, role, action, resource string, effect Effect) *CompiledAssertion {
	a := &CompiledAssertion{ID: id, Policy: policy, Role: role, Action: action, Resource: resource, Effect: effect}
	if hasGlob(role) {
		a.RoleRe = globRegexp(role)
	}
	if hasGlob(action) {
		a.ActionRe = globRegexp(action)
	}
	if hasGlob(resource) {
		a.ResourceRe = globRegexp(resource)
	}
	return a
}

// indexInto files assertions under a domain's indexes as the compiler does.
func fileAssertions(d *CompiledDomain, as ...*CompiledAssertion) {
	for _, a := range as {
		if a.ActionRe != "" {
			d.GlobActions = append(d.GlobActions, a)
			continue
		}
		if d.Actions == nil {
			d.Actions = map[string]*ActionIndex{}
		}
		ai := d.Actions[a.Action]
		if ai == nil {
			ai = &ActionIndex{}
			d.Actions[a.Action] = ai
		}
		if a.ResourceRe != "" {
			ai.Globs = append(ai.Globs, a)
			continue
		}
		if ai.Exact == nil {
			ai.Exact = map[string][]*CompiledAssertion{}
		}
		ai.Exact[a.Resource] = append(ai.Exact[a.Resource], a)
	}
}

func writeBundle(t testing.TB, c *Compiled, opts BundleOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteBundle(&buf, c, opts); err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	return buf.Bytes()
}

// tarEntry is one archive entry for hand-made bundles.
type tarEntry struct {
	name string
	typ  byte
	body []byte
	link string
}

func entriesOf(t testing.TB, bundle []byte) []tarEntry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{name: hdr.Name, typ: hdr.Typeflag, body: body, link: hdr.Linkname})
	}
}

func makeTarGz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// edit returns a copy of entries with fn applied to each (fn returns false to drop one).
func editEntries(entries []tarEntry, fn func(e *tarEntry) bool) []tarEntry {
	var out []tarEntry
	for _, e := range entries {
		e.body = slices.Clone(e.body)
		if fn(&e) {
			out = append(out, e)
		}
	}
	return out
}

func entryBody(entries []tarEntry, name string) []byte {
	for _, e := range entries {
		if e.name == name {
			return e.body
		}
	}
	return nil
}

func TestWriteBundleLayout(t *testing.T) {
	ec, _, _ := testKeys(t)
	c := smallCompiled()
	b := writeBundle(t, c, BundleOptions{SigningKey: ec})
	entries := entriesOf(t, b)
	var names []string
	for _, e := range entries {
		names = append(names, e.name)
	}
	want := []string{".manifest", ".signatures.json", "athenz/authz.rego", "data.json", "envoy/authz.rego"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries = %q, want %q", names, want)
	}
	var manifest map[string]any
	if err := json.Unmarshal(entryBody(entries, ".manifest"), &manifest); err != nil {
		t.Fatal(err)
	}
	wantManifest := map[string]any{"revision": "rev-1", "roots": []any{"athenz", "envoy"}, "rego_version": float64(1)}
	if !reflect.DeepEqual(manifest, wantManifest) {
		t.Errorf(".manifest = %v, want %v", manifest, wantManifest)
	}
	var data map[string]map[string]any
	if err := json.Unmarshal(entryBody(entries, "data.json"), &data); err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 || data["athenz"] == nil {
		t.Fatalf("data.json top level = %v, want only \"athenz\"", reflect.ValueOf(data).MapKeys())
	}
	// data.athenz.authz is the Rego package: the data must never claim that key.
	for k := range data["athenz"] {
		if k == "authz" {
			t.Errorf("data.json has athenz.authz, which clashes with package athenz.authz")
		}
	}
	if typ := reflect.TypeFor[Compiled](); true {
		for i := range typ.NumField() {
			if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); tag == "authz" {
				t.Errorf("Compiled field %s is serialised as \"authz\"", typ.Field(i).Name)
			}
		}
	}
	for path, src := range RegoModules() {
		if got := entryBody(entries, path); !bytes.Equal(got, src) {
			t.Errorf("%s differs from the embedded module", path)
		}
	}
}

func TestRegoModulesEmbedded(t *testing.T) {
	embedded, err := regoSources.ReadDir("rego")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regoModules {
		listed[m.file] = true
	}
	for _, e := range embedded {
		if !listed["rego/"+e.Name()] {
			t.Errorf("rego/%s is embedded but not listed in regoModules", e.Name())
		}
	}
	if len(RegoModules()) != len(regoModules) {
		t.Errorf("RegoModules has %d entries, want %d", len(RegoModules()), len(regoModules))
	}
}

func TestWriteBundleDeterministic(t *testing.T) {
	ec, _, rs := testKeys(t)
	for _, tc := range []struct {
		name string
		opts BundleOptions
	}{
		{"unsigned", BundleOptions{}},
		{"ES256", BundleOptions{SigningKey: ec}},
		{"RS256", BundleOptions{SigningKey: rs, KeyID: "k2", Scope: "write"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := writeBundle(t, smallCompiled(), tc.opts)
			b := writeBundle(t, smallCompiled(), tc.opts)
			if !bytes.Equal(a, b) {
				t.Error("two writes of the same snapshot differ")
			}
		})
	}
}

func TestReadBundleRoundTrip(t *testing.T) {
	ec, ec2, rs := testKeys(t)
	for _, tc := range []struct {
		name       string
		write      BundleOptions
		read       ReadOptions
		wantSigned bool
		wantKeyID  string
	}{
		{name: "unsigned", write: BundleOptions{}, read: ReadOptions{}},
		{name: "signed, not verified", write: BundleOptions{SigningKey: ec}, read: ReadOptions{}, wantSigned: true},
		{name: "ES256", write: BundleOptions{SigningKey: ec},
			read:       ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": ec.Public()}},
			wantSigned: true, wantKeyID: "default"},
		{name: "RS256 with key id and scope", write: BundleOptions{SigningKey: rs, KeyID: "rsa-1", Scope: "athenz"},
			read:       ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"rsa-1": rs.Public()}, Scope: "athenz"},
			wantSigned: true, wantKeyID: "rsa-1"},
		{name: "rotation: second of two keys", write: BundleOptions{SigningKey: ec2, KeyID: "new"},
			read:       ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"old": ec.Public(), "new": ec2.Public()}},
			wantSigned: true, wantKeyID: "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := smallCompiled()
			raw := writeBundle(t, c, tc.write)
			b, err := ReadBundle(bytes.NewReader(raw), tc.read)
			if err != nil {
				t.Fatalf("ReadBundle: %v", err)
			}
			if b.Signed != tc.wantSigned || b.KeyID != tc.wantKeyID || b.Revision != "rev-1" {
				t.Errorf("Signed, KeyID, Revision = %v, %q, %q; want %v, %q, rev-1", b.Signed, b.KeyID, b.Revision, tc.wantSigned, tc.wantKeyID)
			}
			if !reflect.DeepEqual(b.Compiled, c) {
				t.Errorf("snapshot changed in the round trip:\n got %+v\nwant %+v", b.Compiled, c)
			}
			if !reflect.DeepEqual(b.Rego, RegoModules()) {
				t.Error("Rego modules changed in the round trip")
			}
		})
	}
}

// TestReadBundleSlashNames reads a bundle whose entries are named as `opa build` names
// them ("/data.json").
func TestReadBundleSlashNames(t *testing.T) {
	ec, _, _ := testKeys(t)
	entries := entriesOf(t, writeBundle(t, smallCompiled(), BundleOptions{SigningKey: ec}))
	slashed := makeTarGz(t, editEntries(entries, func(e *tarEntry) bool { e.name = "/" + e.name; return true }))
	withDirs := makeTarGz(t, append([]tarEntry{{name: "athenz/", typ: tar.TypeDir}, {name: "/envoy", typ: tar.TypeDir}}, entries...))
	for name, raw := range map[string][]byte{"slashed": slashed, "directories": withDirs} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadBundle(bytes.NewReader(raw), ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": ec.Public()}}); err != nil {
				t.Fatalf("ReadBundle: %v", err)
			}
		})
	}
}

// resign replaces .signatures.json with a signature over the (edited) files.
func resign(t testing.TB, entries []tarEntry, key crypto.Signer, keyID, scope string) []tarEntry {
	t.Helper()
	files := map[string][]byte{}
	for _, e := range entries {
		if e.name != signaturesFile {
			files[e.name] = e.body
		}
	}
	sig, err := signFiles(files, key, keyID, scope)
	if err != nil {
		t.Fatal(err)
	}
	return append(editEntries(entries, func(e *tarEntry) bool { return e.name != signaturesFile }), tarEntry{name: signaturesFile, body: sig})
}

// editJWS rewrites the signature's JWS parts.
func editJWS(t testing.TB, entries []tarEntry, fn func(parts []string)) []tarEntry {
	t.Helper()
	return editEntries(entries, func(e *tarEntry) bool {
		if e.name != signaturesFile {
			return true
		}
		var sc signaturesConfig
		if err := json.Unmarshal(e.body, &sc); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(sc.Signatures[0], ".")
		fn(parts)
		sc.Signatures[0] = strings.Join(parts, ".")
		e.body, _ = json.Marshal(sc)
		return true
	})
}

func b64JSON(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestReadBundleRefuses(t *testing.T) {
	ec, ec2, rs := testKeys(t)
	keys := map[string]crypto.PublicKey{"default": ec.Public()}
	signed := entriesOf(t, writeBundle(t, smallCompiled(), BundleOptions{SigningKey: ec}))
	unsigned := entriesOf(t, writeBundle(t, smallCompiled(), BundleOptions{}))
	replace := func(entries []tarEntry, name string, content string) []tarEntry {
		return editEntries(entries, func(e *tarEntry) bool {
			if e.name == name {
				e.body = []byte(content)
			}
			return true
		})
	}
	editData := func(fn func(s string) string) []tarEntry {
		return editEntries(unsigned, func(e *tarEntry) bool {
			if e.name == dataFile {
				e.body = []byte(fn(string(e.body)))
			}
			return true
		})
	}
	setData := func(fn func(c *Compiled)) []tarEntry {
		c := smallCompiled()
		fn(c)
		b, err := json.Marshal(bundleData{Athenz: c})
		if err != nil {
			t.Fatal(err)
		}
		return replace(unsigned, dataFile, string(b))
	}
	gzipBomb := func() []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		tw.WriteHeader(&tar.Header{Name: "data.json", Typeflag: tar.TypeReg, Size: 64 << 20, Mode: 0o644})
		zeros := make([]byte, 1<<20)
		for range 64 {
			tw.Write(zeros)
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}()
	manyFiles := func() []byte { // every entry small: only the running total stops it
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		chunk := make([]byte, 4096)
		for i := range 1024 {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d.rego", i), Typeflag: tar.TypeReg, Size: int64(len(chunk)), Mode: 0o644})
			tw.Write(chunk)
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}()

	for _, tc := range []struct {
		name    string
		raw     []byte
		entries []tarEntry
		opts    ReadOptions
		err     error
		msg     string
	}{
		// Signatures.
		{name: "unsigned with keys", entries: unsigned, opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleUnsigned, msg: "no .signatures.json"},
		{name: "bad signature bytes", entries: editJWS(t, signed, func(p []string) { p[2] = "A" + p[2][1:] }), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "does not verify"},
		{name: "signed by another key", entries: resign(t, signed, ec2, "default", ""), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "does not verify"},
		{name: "wrong key id", entries: resign(t, signed, ec, "other", ""), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `key id "other"`},
		{name: "kid and keyid disagree", entries: editJWS(t, signed, func(p []string) {
			p[0] = b64JSON(map[string]string{"alg": "ES256", "kid": "evil"})
		}), opts: ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": ec.Public(), "evil": ec2.Public()}}, err: ErrBundleSignature, msg: "disagree"},
		{name: "alg none", entries: editJWS(t, signed, func(p []string) {
			p[0] = b64JSON(map[string]string{"alg": "none", "kid": "default"})
		}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `algorithm "none"`},
		{name: "alg none, empty signature", entries: editJWS(t, signed, func(p []string) {
			p[0] = b64JSON(map[string]string{"alg": "none", "kid": "default"})
			p[2] = ""
		}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "empty JWS part"},
		{name: "duplicate header member", entries: editJWS(t, signed, func(p []string) {
			p[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"default","kid":"evil"}`))
		}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "appears twice"},
		{name: "duplicate payload member", entries: editJWS(t, signed, func(p []string) {
			payload, _ := base64.RawURLEncoding.DecodeString(p[1])
			p[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"files":`, `"files":[],"files":`, 1)))
		}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "appears twice"},
		{name: "RSA key for an ECDSA signature", entries: signed, opts: ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": rs.Public()}}, err: ErrBundleSignature, msg: `want RS256`},
		{name: "critical header", entries: editJWS(t, signed, func(p []string) {
			p[0] = b64JSON(map[string]any{"alg": "ES256", "kid": "default", "crit": []string{"exp"}})
		}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "critical"},
		{name: "wrong scope", entries: resign(t, signed, ec, "default", "other"), opts: ReadOptions{VerificationKeys: keys, Scope: "mine"}, err: ErrBundleSignature, msg: "scope"},
		{name: "tampered data.json", entries: replace(signed, dataFile, strings.Replace(string(entryBody(signed, dataFile)), `"reader":0`, `"reader":1`, 1)), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `"data.json": digest mismatch`},
		{name: "tampered rego", entries: replace(signed, "athenz/authz.rego", string(entryBody(signed, "athenz/authz.rego"))+"\nallow := true\n"), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `"athenz/authz.rego": digest mismatch`},
		{name: "tampered manifest", entries: replace(signed, manifestFile, `{"revision":"rev-2","roots":["athenz","envoy"]}`), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `".manifest": digest mismatch`},
		{name: "file not in signature", entries: append(slices.Clone(signed), tarEntry{name: "extra.rego", body: []byte("package athenz.x\n")}), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `"extra.rego" is in the bundle but not in the signature`},
		{name: "listed file missing", entries: editEntries(signed, func(e *tarEntry) bool { return e.name != "envoy/authz.rego" }), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: `"envoy/authz.rego" is listed in the signature but missing`},
		{name: "two signatures", entries: replace(signed, signaturesFile, `{"signatures":["a.b.c","d.e.f"]}`), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "exactly one"},
		{name: "signature plugin", entries: replace(signed, signaturesFile, `{"signatures":["a.b.c"],"plugin":"x"}`), opts: ReadOptions{VerificationKeys: keys}, err: ErrBundleSignature, msg: "plugin"},

		// Sizes.
		{name: "compressed over limit", raw: writeBundle(t, smallCompiled(), BundleOptions{}), opts: ReadOptions{MaxBytes: 1000}, err: ErrBundleTooLarge, msg: "compressed"},
		{name: "gzip bomb, declared size", raw: gzipBomb, opts: ReadOptions{MaxBytes: 1 << 20}, err: ErrBundleTooLarge, msg: "uncompressed"},
		{name: "many small files", raw: manyFiles, opts: ReadOptions{MaxBytes: 1 << 20}, err: ErrBundleTooLarge, msg: "uncompressed"},

		// Archive entries.
		{name: "not gzip", raw: []byte("data.json"), err: ErrBundleInvalid, msg: "not a gzip stream"},
		{name: "truncated", raw: writeBundle(t, smallCompiled(), BundleOptions{})[:300], err: ErrBundleInvalid},
		{name: "dot-dot", entries: append(slices.Clone(unsigned), tarEntry{name: "../evil.rego"}), err: ErrBundleInvalid, msg: `unsafe entry path "../evil.rego"`},
		{name: "dot-dot inside", entries: append(slices.Clone(unsigned), tarEntry{name: "athenz/../../evil.rego"}), err: ErrBundleInvalid, msg: "unsafe entry path"},
		{name: "absolute", entries: append(slices.Clone(unsigned), tarEntry{name: "//etc/evil.rego"}), err: ErrBundleInvalid, msg: "absolute path"},
		{name: "backslash", entries: append(slices.Clone(unsigned), tarEntry{name: `athenz\evil.rego`}), err: ErrBundleInvalid, msg: "backslash"},
		{name: "dot segment", entries: append(slices.Clone(unsigned), tarEntry{name: "./evil.rego"}), err: ErrBundleInvalid, msg: `"." segment`},
		{name: "empty segment", entries: append(slices.Clone(unsigned), tarEntry{name: "athenz//evil.rego"}), err: ErrBundleInvalid, msg: "empty path segment"},
		{name: "symlink", entries: append(slices.Clone(unsigned), tarEntry{name: "link.rego", typ: tar.TypeSymlink, link: "/etc/passwd"}), err: ErrBundleInvalid, msg: "symbolic link"},
		{name: "hard link", entries: append(slices.Clone(unsigned), tarEntry{name: "link.rego", typ: tar.TypeLink, link: "data.json"}), err: ErrBundleInvalid, msg: "hard link"},
		{name: "device", entries: append(slices.Clone(unsigned), tarEntry{name: "dev.rego", typ: tar.TypeChar}), err: ErrBundleInvalid, msg: "device"},
		{name: "fifo", entries: append(slices.Clone(unsigned), tarEntry{name: "fifo.rego", typ: tar.TypeFifo}), err: ErrBundleInvalid, msg: "FIFO"},
		{name: "duplicate", entries: append(slices.Clone(unsigned), tarEntry{name: "data.json", body: []byte("{}")}), err: ErrBundleInvalid, msg: `duplicate entry "data.json"`},
		{name: "duplicate via slash", entries: append(slices.Clone(unsigned), tarEntry{name: "/data.json", body: []byte("{}")}), err: ErrBundleInvalid, msg: `duplicate entry "/data.json"`},
		{name: "nested data file", entries: append(slices.Clone(unsigned), tarEntry{name: "athenz/x/data.json", body: []byte("{}")}), err: ErrBundleInvalid, msg: `unexpected file "athenz/x/data.json"`},
		{name: "other file", entries: append(slices.Clone(unsigned), tarEntry{name: "notes.txt"}), err: ErrBundleInvalid, msg: `unexpected file "notes.txt"`},
		{name: "no manifest", entries: editEntries(unsigned, func(e *tarEntry) bool { return e.name != manifestFile }), err: ErrBundleInvalid, msg: "no .manifest"},
		{name: "no data", entries: editEntries(unsigned, func(e *tarEntry) bool { return e.name != dataFile }), err: ErrBundleInvalid, msg: "no data.json"},

		// Manifest.
		{name: "manifest unknown field", entries: replace(unsigned, manifestFile, `{"revision":"rev-1","wasm":[]}`), err: ErrBundleInvalid, msg: `unknown field "wasm"`},
		{name: "manifest roots", entries: replace(unsigned, manifestFile, `{"revision":"rev-1","roots":["envoy"]}`), err: ErrBundleInvalid, msg: "roots"},
		{name: "revision mismatch", entries: replace(unsigned, manifestFile, `{"revision":"rev-2"}`), err: ErrBundleInvalid, msg: "revision"},

		// data.json.
		{name: "data not JSON", entries: replace(unsigned, dataFile, "athenz"), err: ErrBundleInvalid, msg: "data.json"},
		{name: "data trailing document", entries: editData(func(s string) string { return s + "{}" }), err: ErrBundleInvalid, msg: "data after"},
		{name: "data unknown top-level key", entries: editData(func(s string) string { return strings.Replace(s, `{"athenz":`, `{"envoy":{},"athenz":`, 1) }), err: ErrBundleInvalid, msg: `unknown field "envoy"`},
		{name: "data unknown field", entries: editData(func(s string) string { return strings.Replace(s, `"revision":`, `"authz":true,"revision":`, 1) }), err: ErrBundleInvalid, msg: `unknown field "authz"`},
		{name: "data key in other case", entries: editData(func(s string) string { return strings.Replace(s, `"revision":`, `"Revision":`, 1) }), err: ErrBundleInvalid, msg: `["Revision"] differs`},
		{name: "data null list", entries: editData(func(s string) string {
			return strings.Replace(s, `"globs"`, `"exact":null,"globs"`, 1)
		}), err: ErrBundleInvalid, msg: "differs"},
		{name: "data no athenz", entries: replace(unsigned, dataFile, `{}`), err: ErrBundleInvalid, msg: `no "athenz"`},
		{name: "null domain", entries: setData(func(c *Compiled) { c.Domains["x"] = nil }), err: ErrBundleInvalid, msg: `domain "x" is null`},
		{name: "bad effect", entries: setData(func(c *Compiled) { c.Domains["sports"].Actions["read"].Exact["sports:doc<&>"][0].Effect = "MAYBE" }), err: ErrBundleInvalid, msg: `effect "MAYBE"`},
		{name: "regex does not match glob", entries: setData(func(c *Compiled) { c.Domains["sports"].Actions["get"].Globs[0].ResourceRe = "^.*$" }), err: ErrBundleInvalid, msg: "resource_re"},
		{name: "regex on a literal", entries: setData(func(c *Compiled) {
			c.Domains["sports"].Actions["read"].Exact["sports:doc<&>"][0].RoleRe = "^(?s:reader)$"
		}), err: ErrBundleInvalid, msg: "role_re"},
		{name: "misfiled assertion", entries: setData(func(c *Compiled) {
			d := c.Domains["sports"]
			d.Actions["read"].Exact["sports:other"] = d.Actions["read"].Exact["sports:doc<&>"]
			delete(d.Actions["read"].Exact, "sports:doc<&>")
		}), err: ErrBundleInvalid, msg: "filed under"},
		{name: "duplicate assertion id", entries: setData(func(c *Compiled) { c.Domains["sports"].Actions["get"].Globs[0].ID = 0 }), err: ErrBundleInvalid, msg: "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw
			if raw == nil {
				raw = makeTarGz(t, tc.entries)
			}
			b, err := ReadBundle(bytes.NewReader(raw), tc.opts)
			if err == nil {
				t.Fatalf("ReadBundle accepted the bundle (revision %q)", b.Revision)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %q does not wrap %q", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	ec, _, rs := testKeys(t)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"ECDSA P-256", ec, "ES256"},
		{"RSA", rs, "RS256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := ParseSigningKey(privatePEM(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParseVerificationKey(publicPEM(t, tc.key.Public()))
			if err != nil {
				t.Fatal(err)
			}
			if alg, err := SigningAlgorithm(pub); err != nil || alg != tc.alg {
				t.Errorf("SigningAlgorithm = %q, %v; want %q", alg, err, tc.alg)
			}
			raw := writeBundle(t, smallCompiled(), BundleOptions{SigningKey: signer})
			if _, err := ReadBundle(bytes.NewReader(raw), ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": pub}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseVerificationKey(publicPEM(t, small.Public())); err == nil {
		t.Error("ParseVerificationKey accepted a P-224 key")
	}
	if _, err := ParseSigningKey([]byte("not a key")); err == nil {
		t.Error("ParseSigningKey accepted garbage")
	}
}

func FuzzReadBundle(f *testing.F) {
	// Only an ECDSA key: RSA generation is slow in the coverage-instrumented fuzz worker,
	// which runs this preamble every time it starts.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	keys := map[string]crypto.PublicKey{"default": ec.Public()}
	signed := writeBundle(f, smallCompiled(), BundleOptions{SigningKey: ec})
	f.Add(signed)
	f.Add(writeBundle(f, smallCompiled(), BundleOptions{}))
	f.Add(makeTarGz(f, []tarEntry{{name: "../x"}, {name: "l", typ: tar.TypeSymlink, link: "/"}}))
	f.Add(signed[:len(signed)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, opts := range []ReadOptions{{MaxBytes: 1 << 20}, {MaxBytes: 1 << 20, VerificationKeys: keys}} {
			b, err := ReadBundle(bytes.NewReader(raw), opts)
			if err == nil && (b.Compiled == nil || b.Rego == nil) {
				t.Fatal("ReadBundle returned an incomplete bundle without an error")
			}
			if err != nil && !errors.Is(err, ErrBundleInvalid) && !errors.Is(err, ErrBundleTooLarge) &&
				!errors.Is(err, ErrBundleUnsigned) && !errors.Is(err, ErrBundleSignature) {
				t.Fatalf("error %q wraps none of the bundle errors", err)
			}
		}
	})
}
