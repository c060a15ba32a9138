package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

var (
	polModified = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	polExpires  = polModified.Add(7 * 24 * time.Hour)
	polNow      = func() time.Time { return polModified.Add(time.Hour) }
)

// testPolicyData is a domain's signed policy data as ZTS would serve it.
func testPolicyData(expires time.Time) *athenz.SignedPolicyData {
	return &athenz.SignedPolicyData{
		PolicyData: athenz.PolicyData{
			Domain: "Sports",
			Policies: []athenz.SignedPolicy{
				{Name: "sports:policy.readers", Modified: athenz.NewTimestamp(polModified), Assertions: []athenz.SignedAssertion{
					{Role: "sports:role.Readers", Resource: "sports:scores.*", Action: "read", Effect: "ALLOW"},
					{Role: "sports:role.readers", Resource: "sports:scores.secret", Action: "read", Effect: "DENY"},
				}},
				{Name: "sports:policy.empty"},
			},
		},
		ZMSKeyID:     "zms.0",
		ZMSSignature: "c2ln",
		Modified:     athenz.NewTimestamp(polModified),
		Expires:      athenz.NewTimestamp(expires),
	}
}

// signPol returns a .pol file as zpe-updater writes it: the canonical signed policy
// data followed by keyId and signature.
func signPol(t *testing.T, key *ecdsa.PrivateKey, keyID string, spd *athenz.SignedPolicyData) []byte {
	t.Helper()
	signed, err := spd.Sign(key, keyID)
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := athenz.CanonicalSignedPolicyData(spd)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"signedPolicyData":` + string(canonical) + `,"keyId":"` + keyID + `","signature":"` + signed.Signature + `"}`)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestParseSignedPolicyFile(t *testing.T) {
	key, other := newKey(t), newKey(t)
	keys := KeyMap{"zts.0": &key.PublicKey, "zts.1": &other.PublicKey}
	good := signPol(t, key, "zts.0", testPolicyData(polExpires))
	tampered := []byte(strings.Replace(string(good), `"action":"read"`, `"action":"*"`, 1))
	reordered := func() []byte { // same values, other key order and spacing: still verifies
		var v map[string]any
		if err := json.Unmarshal(good, &v); err != nil {
			t.Fatal(err)
		}
		b, err := json.MarshalIndent(v, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	wrongKey := signPol(t, other, "zts.0", testPolicyData(polExpires))
	noExpires := []byte(strings.Replace(string(good), `"expires":"2024-01-08T00:00:00.000Z",`, ``, 1))
	jws := []byte(`{"payload": "e30", "protected": "e30", "header": {}, "signature": "x"}`)
	for _, tc := range []struct {
		name string
		data []byte
		keys PublicKeys
		now  func() time.Time
		want string // the problem messages, joined; empty for success
	}{
		{name: "verified", data: good, keys: keys},
		{name: "unverified", data: tampered},
		{name: "reformatted", data: reordered, keys: keys},
		{name: "tampered", data: tampered, keys: keys,
			want: `ZTS signature does not verify: zts signature (key "zts.0"): verify ECDSA signature: signature does not verify`},
		{name: "wrong key", data: wrongKey, keys: keys,
			want: `ZTS signature does not verify: zts signature (key "zts.0"): verify ECDSA signature: signature does not verify`},
		{name: "unknown key id", data: good, keys: KeyMap{"zts.1": &other.PublicKey},
			want: `unknown ZTS key id "zts.0"`},
		{name: "empty key map", data: good, keys: KeyMap{},
			want: `unknown ZTS key id "zts.0"`},
		{name: "expired", data: good, keys: keys, now: func() time.Time { return polExpires.Add(time.Millisecond) },
			want: `signed policy data expired at 2024-01-08T00:00:00.000Z`},
		{name: "expires exactly now", data: good, keys: keys, now: func() time.Time { return polExpires }},
		{name: "no expires", data: noExpires,
			want: `signedPolicyData needs both modified and expires`},
		{name: "jws", data: jws, want: `JWS signed policy data is not supported: run zpe-updater without JWS policy support`},
		{name: "no signed data", data: []byte(`{"keyId": "zts.0", "signature": "x"}`), want: `no signedPolicyData`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now == nil {
				now = polNow
			}
			d, _, probs := parseSignedPolicyFile("p.pol", tc.data, LoadOptions{ZTSKeys: tc.keys, Now: now})
			var got []string
			for _, p := range probs {
				got = append(got, p.Message)
				if p.Line != 1 || p.Column < 1 {
					t.Errorf("problem %s has no position", p)
				}
			}
			if g := strings.Join(got, "\n"); g != tc.want {
				t.Fatalf("problems:\n got  %s\n want %s", g, tc.want)
			}
			if tc.want != "" {
				return
			}
			if d.Name != "sports" || !d.PolicyOnly || d.Source != "p.pol" || !d.Modified.Equal(polModified) {
				t.Errorf("domain = %q policyOnly=%v source=%q modified=%v", d.Name, d.PolicyOnly, d.Source, d.Modified)
			}
			ps := d.Policies.Contents.Policies
			if len(ps) != 2 || ps[0].Assertions[0].Role != "sports:role.readers" || ps[0].Assertions[1].Effect != Deny {
				t.Errorf("policies = %+v", ps)
			}
			if err := ValidateDomain(d); err != nil {
				t.Errorf("loaded domain does not re-validate: %v", err)
			}
		})
	}
}

// TestSignedPolicyValidation: policies from ZTS are validated like domain files, except
// that assertion roles need not be defined (a .pol file has no roles).
func TestSignedPolicyValidation(t *testing.T) {
	key := newKey(t)
	spd := testPolicyData(polExpires)
	spd.PolicyData.Policies[1].Assertions = []athenz.SignedAssertion{
		{Role: "weather:role.r", Resource: "sports:x", Action: "read", Effect: "ALLOW"},
		{Role: "sports:role.undefined", Resource: "x", Action: "read", Effect: "ALLOW"},
	}
	_, _, probs := parseSignedPolicyFile("p.pol", signPol(t, key, "zts.0", spd), LoadOptions{ZTSKeys: KeyMap{"zts.0": &key.PublicKey}, Now: polNow})
	var got []string
	for _, p := range probs {
		got = append(got, p.Message)
	}
	want := []string{
		`policy "sports:policy.empty": assertion role "weather:role.r" belongs to domain "weather", not "Sports"`,
		`policy "sports:policy.empty": assertion resource "x": want "<domain>:<entity>"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n got  %q\n want %q", got, want)
	}
}

// TestParseSignedPolicyData uses the exported entry point, which checks expiry against
// the wall clock: the data expires an hour from now.
func TestParseSignedPolicyData(t *testing.T) {
	key := newKey(t)
	data := signPol(t, key, "zts.0", testPolicyData(time.Now().Add(time.Hour)))
	if _, err := ParseSignedPolicyData("p.pol", data, KeyMap{"zts.0": &key.PublicKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSignedPolicyData("p.pol", data, KeyMap{}); err == nil {
		t.Fatal("verified against an empty key map")
	}
}

// TestLoadDirWithPol mixes .pol files and domain files in one directory.
func TestLoadDirWithPol(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	weather := testPolicyData(polExpires)
	weather.PolicyData = athenz.PolicyData{Domain: "weather", Policies: []athenz.SignedPolicy{{Name: "weather:policy.p",
		Assertions: []athenz.SignedAssertion{{Role: "weather:role.r", Resource: "weather:x", Action: "read", Effect: "ALLOW"}}}}}
	files := map[string][]byte{
		"weather.pol": signPol(t, key, "zts.0", weather),
		"media.json":  []byte(`{"name": "media"}`),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := LoadOptions{ZTSKeys: KeyMap{"zts.0": &key.PublicKey}, Now: polNow}
	domains, err := LoadDirWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(domains) != 2 || domains[0].Name != "media" || domains[1].Name != "weather" || !domains[1].PolicyOnly {
		t.Fatalf("domains = %+v", domains)
	}
	// A domain file for the same domain as a .pol file is a conflict.
	if err := os.WriteFile(filepath.Join(dir, "weather.yaml"), []byte("name: weather\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadDirWith(dir, opts)
	got := loadProblems(t, dir, err)
	want := `weather.yaml:1:7: domain "weather" is also defined in ` + filepath.Join(dir, "weather.pol")
	if len(got) != 1 || got[0] != want {
		t.Errorf("problems = %q, want %q", got, want)
	}
}
