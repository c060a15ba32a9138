package athenz_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// canonicalCase is one testdata/canonical/<name>.input.json document.
type canonicalCase struct {
	name  string
	input []byte
}

func canonicalCases(t *testing.T) []canonicalCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "canonical", "*.input.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no canonical test inputs: %v", err)
	}
	var cases []canonicalCase
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, canonicalCase{strings.TrimSuffix(filepath.Base(p), ".input.json"), b})
	}
	return cases
}

func decodeSigned(t *testing.T, b []byte) *athenz.SignedPolicyData {
	t.Helper()
	var s athenz.SignedPolicyData
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &s
}

// checkGolden compares got with testdata/canonical/<file>, or rewrites it under -update.
func checkGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "canonical", file)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed\n got: %s\nwant: %s", file, got, want)
	}
}

func TestCanonicalGolden(t *testing.T) {
	for _, tc := range canonicalCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			s := decodeSigned(t, tc.input)
			signed, err := athenz.CanonicalSignedPolicyData(s)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.name+".signed.golden", signed)
			policy, err := athenz.CanonicalPolicyData(&s.PolicyData)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.name+".policy.golden", policy)

			// The policy canonical form is embedded verbatim in the signed one.
			if !bytes.Contains(signed, append([]byte(`"policyData":`), policy...)) {
				t.Errorf("signed form does not embed the policy form")
			}
			// Serving the document and decoding it again must not change what is signed.
			wire, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			again, err := athenz.CanonicalSignedPolicyData(decodeSigned(t, wire))
			if err != nil || !bytes.Equal(again, signed) {
				t.Errorf("wire round trip changed the canonical form:\n%s\n%s (%v)", again, signed, err)
			}
		})
	}
}

func TestCanonicalRules(t *testing.T) {
	ts, _ := athenz.ParseTimestamp("2024-01-02T03:04:05.600Z")
	doc := func(edit func(*athenz.SignedPolicyData)) *athenz.SignedPolicyData {
		s := &athenz.SignedPolicyData{
			PolicyData: athenz.PolicyData{Domain: "d", Policies: []athenz.SignedPolicy{{
				Name: "d:policy.p",
				Assertions: []athenz.SignedAssertion{
					{Role: "d:role.r", Resource: "d:x", Action: "read", Effect: athenz.EffectAllow},
				},
			}}},
			Modified: ts, Expires: ts,
		}
		if edit != nil {
			edit(s)
		}
		return s
	}
	tests := []struct {
		name    string
		doc     *athenz.SignedPolicyData
		want    string
		wantErr string
	}{
		{"minimal", doc(nil),
			`{"expires":"2024-01-02T03:04:05.600Z","modified":"2024-01-02T03:04:05.600Z","policyData":{"domain":"d","policies":[{"assertions":[{"action":"read","effect":"ALLOW","resource":"d:x","role":"d:role.r"}],"name":"d:policy.p"}]},"zmsKeyId":"","zmsSignature":""}`, ""},
		{"nil policies left out", doc(func(s *athenz.SignedPolicyData) { s.PolicyData.Policies = nil }),
			`{"expires":"2024-01-02T03:04:05.600Z","modified":"2024-01-02T03:04:05.600Z","policyData":{"domain":"d"},"zmsKeyId":"","zmsSignature":""}`, ""},
		{"id and modified kept", doc(func(s *athenz.SignedPolicyData) {
			s.PolicyData.Policies[0].Modified = ts
			s.PolicyData.Policies[0].Assertions[0].ID = 7
			s.ZMSKeyID, s.ZMSSignature = "z", "sig"
		}),
			`{"expires":"2024-01-02T03:04:05.600Z","modified":"2024-01-02T03:04:05.600Z","policyData":{"domain":"d","policies":[{"assertions":[{"action":"read","effect":"ALLOW","id":7,"resource":"d:x","role":"d:role.r"}],"modified":"2024-01-02T03:04:05.600Z","name":"d:policy.p"}]},"zmsKeyId":"z","zmsSignature":"sig"}`, ""},
		{"invalid utf8 replaced byte by byte", doc(func(s *athenz.SignedPolicyData) {
			s.PolicyData.Policies[0].Assertions[0].Action = "a\xff\xfeb"
		}),
			`{"expires":"2024-01-02T03:04:05.600Z","modified":"2024-01-02T03:04:05.600Z","policyData":{"domain":"d","policies":[{"assertions":[{"action":"a` + "\uFFFD\uFFFD" + `b","effect":"ALLOW","resource":"d:x","role":"d:role.r"}],"name":"d:policy.p"}]},"zmsKeyId":"","zmsSignature":""}`, ""},
		{"missing modified", doc(func(s *athenz.SignedPolicyData) { s.Modified = athenz.Timestamp{} }), "", "modified and expires are required"},
		{"missing expires", doc(func(s *athenz.SignedPolicyData) { s.Expires = athenz.Timestamp{} }), "", "modified and expires are required"},
		{"missing domain", doc(func(s *athenz.SignedPolicyData) { s.PolicyData.Domain = "" }), "", "domain is required"},
		{"nil document", nil, "", "nil document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := athenz.CanonicalSignedPolicyData(tc.doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
	if _, err := athenz.CanonicalPolicyData(nil); err == nil {
		t.Error("CanonicalPolicyData(nil) succeeded")
	}
}

func TestSignedPolicyWireForm(t *testing.T) {
	ts, _ := athenz.ParseTimestamp("2024-01-02T03:04:05Z")
	d := athenz.DomainSignedPolicyData{
		SignedPolicyData: athenz.SignedPolicyData{
			PolicyData: athenz.PolicyData{Domain: "d", Policies: []athenz.SignedPolicy{
				{Name: "d:policy.empty"},
				{Name: "d:policy.p", Modified: ts, Assertions: []athenz.SignedAssertion{{Role: "d:role.r", Resource: "d:x", Action: "a"}}},
			}},
			Modified: ts, Expires: ts,
		},
		Signature: "sig", KeyID: "0",
	}
	got, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"signedPolicyData":{"policyData":{"domain":"d","policies":[{"name":"d:policy.empty","assertions":[]},{"name":"d:policy.p","modified":"2024-01-02T03:04:05.000Z","assertions":[{"role":"d:role.r","resource":"d:x","action":"a"}]}]},"modified":"2024-01-02T03:04:05.000Z","expires":"2024-01-02T03:04:05.000Z"},"signature":"sig","keyId":"0"}`
	if string(got) != want {
		t.Errorf("\n got: %s\nwant: %s", got, want)
	}
	empty, _ := json.Marshal(athenz.PolicyData{Domain: "d"})
	if string(empty) != `{"domain":"d","policies":[]}` {
		t.Errorf("nil policies marshal as %s, want []", empty)
	}
}

func TestSignedPolicyValidate(t *testing.T) {
	valid := func() athenz.DomainSignedPolicyData {
		var d athenz.DomainSignedPolicyData
		d.SignedPolicyData = *decodeSigned(t, mustRead(t, "testdata/canonical/deny_and_allow.input.json"))
		d.Signature, d.KeyID = "sig", "0"
		return d
	}
	tests := []struct {
		name    string
		edit    func(*athenz.DomainSignedPolicyData)
		wantErr string
	}{
		{"valid", func(*athenz.DomainSignedPolicyData) {}, ""},
		{"no signature", func(d *athenz.DomainSignedPolicyData) { d.Signature = "" }, "signature is required"},
		{"no key id", func(d *athenz.DomainSignedPolicyData) { d.KeyID = "" }, "keyId is required"},
		{"no modified", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.Modified = athenz.Timestamp{} }, "modified is required"},
		{"no expires", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.Expires = athenz.Timestamp{} }, "expires is required"},
		{"bad domain", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.PolicyData.Domain = "a b" }, `domain name "a b": invalid character ' ' at position 1`},
		{"bad policy name", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.PolicyData.Policies[1].Name = "x:policy." },
			`policies[1]: resource name "x:policy.": '.' at position 8 is not followed by a name part`},
		{"no role", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies[0].Assertions[1].Role = ""
		},
			"policy media.prod:policy.admin: assertions[1]: role is required"},
		{"no resource", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies[0].Assertions[0].Resource = ""
		}, "resource is required"},
		{"no action", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies[0].Assertions[0].Action = ""
		}, "action is required"},
		{"lower-case effect", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies[0].Assertions[0].Effect = "allow"
		},
			`effect "allow": want "ALLOW" or "DENY"`},
		{"missing effect allowed", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies[0].Assertions[0].Effect = ""
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := valid()
			tc.edit(&d)
			err := d.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignedPolicySignAndVerify(t *testing.T) {
	base := decodeSigned(t, mustRead(t, "testdata/canonical/basic.input.json"))
	if err := base.SignZMS(testRSA2048(), "zms.1"); err != nil {
		t.Fatal(err)
	}
	if base.ZMSKeyID != "zms.1" || base.ZMSSignature == "" {
		t.Fatalf("SignZMS did not fill the fields: %q %q", base.ZMSKeyID, base.ZMSSignature)
	}
	signed, err := base.Sign(testP256(), "zts.0")
	if err != nil {
		t.Fatal(err)
	}
	if signed.KeyID != "zts.0" {
		t.Errorf("KeyID = %q", signed.KeyID)
	}
	if err := signed.Verify(testP256().Public()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := signed.SignedPolicyData.VerifyZMS(testRSA2048().Public()); err != nil {
		t.Fatalf("verify zms: %v", err)
	}
	tests := []struct {
		name   string
		edit   func(*athenz.DomainSignedPolicyData)
		verify func(*athenz.DomainSignedPolicyData) error
	}{
		{"assertion changed", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.PolicyData.Policies = []athenz.SignedPolicy{{Name: "sports:policy.readers",
				Assertions: []athenz.SignedAssertion{{Role: "sports:role.readers", Resource: "sports:*", Action: "*", Effect: "ALLOW"}}}}
		}, ztsVerify},
		{"expiry extended", func(d *athenz.DomainSignedPolicyData) {
			d.SignedPolicyData.Expires = athenz.NewTimestamp(d.SignedPolicyData.Expires.AddDate(1, 0, 0))
		}, ztsVerify},
		{"zms key id swapped", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.ZMSKeyID = "zms.2" }, ztsVerify},
		{"wrong zts key", func(*athenz.DomainSignedPolicyData) {}, func(d *athenz.DomainSignedPolicyData) error { return d.Verify(testP256b().Public()) }},
		{"wrong zms key", func(*athenz.DomainSignedPolicyData) {}, func(d *athenz.DomainSignedPolicyData) error {
			return d.SignedPolicyData.VerifyZMS(testRSA2048b().Public())
		}},
		{"zms signature removed", func(d *athenz.DomainSignedPolicyData) { d.SignedPolicyData.ZMSSignature = "" }, func(d *athenz.DomainSignedPolicyData) error {
			return d.SignedPolicyData.VerifyZMS(testRSA2048().Public())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := *signed
			tc.edit(&d)
			if err := tc.verify(&d); !errors.Is(err, athenz.ErrBadSignature) {
				t.Errorf("error %v, want ErrBadSignature", err)
			}
		})
	}
}

func ztsVerify(d *athenz.DomainSignedPolicyData) error { return d.Verify(testP256().Public()) }
