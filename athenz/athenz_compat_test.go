package athenz_test

// Cross-checks against the real Athenz v1.12.13 Go code: the ZTS client types, the
// zpe-updater canonical form and signature validation, the zmssvctoken signer, verifier
// and ybase64, and the RDL schema validators. These imports are test-only.

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"

	"github.com/AthenZ/athenz/clients/go/zms"
	"github.com/AthenZ/athenz/clients/go/zts"
	"github.com/AthenZ/athenz/libs/go/zmssvctoken"
	zpu "github.com/AthenZ/athenz/utils/zpe-updater"
	"github.com/AthenZ/athenz/utils/zpe-updater/util"
	"github.com/ardielle/ardielle-go/rdl"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// athenzCanonical decodes b as the Go ZTS client does (running its validation) and
// returns util.ToCanonicalString of the signed policy data and of its policy data.
func athenzCanonical(t *testing.T, b []byte) (signed, policy string) {
	t.Helper()
	var z zts.SignedPolicyData
	if err := json.Unmarshal(b, &z); err != nil {
		t.Fatalf("the Athenz ZTS client refuses the document: %v", err)
	}
	signed, err := util.ToCanonicalString(&z)
	if err != nil {
		t.Fatal(err)
	}
	policy, err = util.ToCanonicalString(z.PolicyData)
	if err != nil {
		t.Fatal(err)
	}
	return signed, policy
}

func TestCanonicalMatchesAthenzZPEUpdater(t *testing.T) {
	for _, tc := range canonicalCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			s := decodeSigned(t, tc.input)
			oursSigned, err := athenz.CanonicalSignedPolicyData(s)
			if err != nil {
				t.Fatal(err)
			}
			oursPolicy, err := athenz.CanonicalPolicyData(&s.PolicyData)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			// The same bytes whether Athenz reads the original document or what we serve.
			for source, b := range map[string][]byte{"input": tc.input, "served": wire} {
				signed, policy := athenzCanonical(t, b)
				if signed != string(oursSigned) {
					t.Errorf("%s: signed policy data canonical form differs\nathenz: %s\n  ours: %s", source, signed, oursSigned)
				}
				if policy != string(oursPolicy) {
					t.Errorf("%s: policy data canonical form differs\nathenz: %s\n  ours: %s", source, policy, oursPolicy)
				}
			}
		})
	}
}

// publicPEM returns pub as athenz.conf and zpe-updater hold it: the PEM text behind a
// PublicKeyEntry.
func publicPEM(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	entry, err := athenz.EncodePublicKeyEntry(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemText, err := new(zmssvctoken.YBase64).DecodeString(entry)
	if err != nil {
		t.Fatalf("Athenz cannot ybase64-decode our public key entry: %v", err)
	}
	return string(pemText)
}

func TestSignedPolicyVerifiesWithZPEUpdater(t *testing.T) {
	tests := []struct {
		name   string
		ztsKey crypto.Signer
		zmsKey crypto.Signer
		input  string
	}{
		{"ecdsa p256 zts, rsa zms", testP256(), testRSA2048(), "deny_and_allow"},
		{"rsa 2048 zts, ecdsa zms", testRSA2048(), testP256(), "escaping"},
		{"ecdsa p256 both, no policies", testP256(), testP256b(), "empty_policies"},
		{"rsa 2048 both, ids", testRSA2048(), testRSA2048b(), "ids_and_effects"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := decodeSigned(t, mustRead(t, "testdata/canonical/"+tc.input+".input.json"))
			if err := s.SignZMS(tc.zmsKey, "zms.key"); err != nil {
				t.Fatal(err)
			}
			signed, err := s.Sign(tc.ztsKey, "zts.key")
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(signed)
			if err != nil {
				t.Fatal(err)
			}
			config := &zpu.ZpuConfiguration{
				ZtsKeysmap:        map[string]string{"zts.key": publicPEM(t, tc.ztsKey.Public())},
				ZmsKeysmap:        map[string]string{"zms.key": publicPEM(t, tc.zmsKey.Public())},
				CheckZMSSignature: true,
				// Expiry is checked by the caller against its own clock; keep it out of
				// this test so it never depends on the wall clock.
				ExpiredFunc: func(rdl.Timestamp) bool { return false },
			}
			validate := func(b []byte) ([]byte, error) {
				var d zts.DomainSignedPolicyData
				if err := json.Unmarshal(b, &d); err != nil {
					t.Fatalf("the Athenz ZTS client refuses the document: %v", err)
				}
				return zpu.ValidateSignedPolicies(config, zts.ZTSClient{}, &d)
			}
			polFile, err := validate(body)
			if err != nil {
				t.Fatalf("zpe-updater rejects our signed policy data: %v", err)
			}
			canonical, _ := athenz.CanonicalSignedPolicyData(&signed.SignedPolicyData)
			if !bytes.HasPrefix(polFile, append([]byte(`{"signedPolicyData":`), canonical...)) {
				t.Errorf("zpe-updater policy file does not hold our canonical form:\n%s", polFile)
			}

			// A change after signing must be caught by the real validator too.
			tampered := bytes.Replace(body, []byte(`"expires":"2024-`), []byte(`"expires":"2030-`), 1)
			if bytes.Equal(tampered, body) {
				t.Fatal("tampering did not change the document")
			}
			if _, err := validate(tampered); err == nil {
				t.Error("zpe-updater accepted a document whose expiry was changed after signing")
			}
			config.ZmsKeysmap["zms.key"] = publicPEM(t, testP384().Public())
			if _, err := validate(body); err == nil {
				t.Error("zpe-updater accepted a ZMS signature under the wrong key")
			}
		})
	}
}

func TestSignaturesInteroperateWithZMSSvcToken(t *testing.T) {
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa p256", testP256()},
		{"ecdsa p384", testP384()},
		{"rsa 2048", testRSA2048()},
	}
	input := "v=S1;d=sports;n=api;k=0;a=6ddc9124f255b2af;t=1700000000;e=1700003600"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			athenzSigner, err := zmssvctoken.NewSigner(pkcs8PEM(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := athenzSigner.Sign(input)
			if err != nil {
				t.Fatal(err)
			}
			if err := athenz.VerifyYBase64(tc.key.Public(), []byte(input), theirs); err != nil {
				t.Errorf("we reject a zmssvctoken signature: %v", err)
			}
			ours, err := athenz.SignYBase64(tc.key, []byte(input))
			if err != nil {
				t.Fatal(err)
			}
			verifier, err := zmssvctoken.NewVerifier([]byte(publicPEM(t, tc.key.Public())))
			if err != nil {
				t.Fatal(err)
			}
			if err := verifier.Verify(input, ours); err != nil {
				t.Errorf("zmssvctoken rejects our signature: %v", err)
			}
		})
	}
}

func TestYBase64MatchesZMSSvcToken(t *testing.T) {
	var y zmssvctoken.YBase64
	for n := range 70 {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		if got, want := athenz.YEncode(b), y.EncodeToString(b); got != want {
			t.Fatalf("YEncode(%x) = %q, zmssvctoken gives %q", b, got, want)
		}
		back, err := athenz.YDecode(y.EncodeToString(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("YDecode of zmssvctoken output: %x, %v", back, err)
		}
	}
}

func TestPublicKeyEntryReadByAthenz(t *testing.T) {
	for _, key := range []crypto.Signer{testP256(), testRSA2048()} {
		pemText := publicPEM(t, key.Public())
		if _, err := zmssvctoken.NewVerifier([]byte(pemText)); err != nil {
			t.Errorf("zmssvctoken cannot load our public key entry: %v", err)
		}
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		entry := new(zmssvctoken.YBase64).EncodeToString(pemBlock("PUBLIC KEY", der))
		if _, err := athenz.DecodePublicKeyEntry(entry); err != nil {
			t.Errorf("we cannot read an entry encoded by zmssvctoken: %v", err)
		}
	}
}

// TestNamesAgreeWithAthenzSchema runs a corpus through the Go RDL validator with the ZMS
// schema. For every pattern without a top-level alternation the verdicts must match. For
// MemberName the Go validator builds "^" + a|b|c|d + "$", which anchors only the first
// and last alternatives, so it accepts strings such as "sp orts" that the Java server (and
// we) refuse; there we require only that whatever we accept, it accepts too.
func TestNamesAgreeWithAthenzSchema(t *testing.T) {
	corpus := []string{
		"sports", "sports.api", "a.b.c", "a_b", "_", "a-", "-a", "a..b", "a.", ".a", "sp orts",
		"a:b", "a:", ":b", "a:b:c", "a:b.c", "a:group.b", "a:group.", "a:group", "a:role.b",
		"a.b:group.c.d", "*", "**", "a*", "a.*", ".*", "a*b", "a.b*", "caf\u00e9", "user.joe",
		"x:group.y*", "*.a", "a/b", "a b:c", "A.B", "9",
	}
	schema := zms.ZMSSchema()
	exact := map[string]string{
		"simple": "SimpleName", "compound": "CompoundName", "domain": "DomainName",
		"service": "ServiceName", "entity": "EntityName", "resource": "ResourceName",
		"group": "GroupName", "groupMember": "GroupMemberName",
	}
	for kind, typeName := range exact {
		for _, s := range corpus {
			rdlOK := rdl.Validate(schema, typeName, s).Valid
			if ours := validators[kind].is(s); ours != rdlOK {
				t.Errorf("%s %q: ours %v, Athenz RDL %v", typeName, s, ours, rdlOK)
			}
		}
	}
	for _, s := range corpus {
		if athenz.IsMemberName(s) && !rdl.Validate(schema, "MemberName", s).Valid {
			t.Errorf("MemberName %q: we accept, Athenz RDL refuses", s)
		}
	}
	for _, s := range []string{"sp orts", "a:role.b", "a b:c"} {
		if !rdl.Validate(schema, "MemberName", s).Valid || athenz.IsMemberName(s) {
			t.Errorf("MemberName %q: expected the Go RDL validator to accept it and us to refuse it", s)
		}
	}
}

// TestTimestampMatchesRDL checks that every timestamp we accept prints exactly as
// rdl.Timestamp prints it, since both forms end up in signed bytes.
func TestTimestampMatchesRDL(t *testing.T) {
	for _, s := range []string{
		"2024-01-02T03:04:05.600Z", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.6Z",
		"1970-01-01T00:00:00.001Z", "9999-12-31T23:59:59.999Z", "2000-02-29T12:00:00.07Z",
	} {
		ours, err := athenz.ParseTimestamp(s)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := rdl.TimestampParse(s)
		if err != nil {
			t.Fatal(err)
		}
		if ours.String() != theirs.String() || !strings.HasSuffix(ours.String(), "Z") {
			t.Errorf("%s: ours %s, rdl %s", s, ours, theirs)
		}
	}
}

// FuzzCanonicalMatchesAthenz builds one-assertion documents from arbitrary strings
// (invalid UTF-8, control characters and HTML metacharacters included) and requires our
// canonical forms to equal util.ToCanonicalString's byte for byte.
func FuzzCanonicalMatchesAthenz(f *testing.F) {
	f.Add("sports", "sports:policy.p", "sports:role.r", "sports:x", "read", "ALLOW", int64(0), "0", "sig")
	f.Add("d", "", "", "", "", "", int64(-1), "", "")
	f.Add("w<e>ird", "n&m", "\u2028", "a\xffb", "\x00\t", "DENY", int64(1)<<62, "k\"", "s\\")
	f.Fuzz(func(t *testing.T, domain, name, role, resource, action, effect string, id int64, zmsKeyID, zmsSig string) {
		if domain == "" {
			return // refused by us by design; the Go verifier would drop the key
		}
		var zEffect *zts.AssertionEffect
		switch effect {
		case "":
		case athenz.EffectAllow, athenz.EffectDeny:
			e := zts.NewAssertionEffect(effect)
			zEffect = &e
		default:
			return // the ZTS client cannot represent any other effect
		}
		at, _ := athenz.ParseTimestamp("2024-01-02T03:04:05.678Z")
		ours := &athenz.SignedPolicyData{
			PolicyData: athenz.PolicyData{Domain: domain, Policies: []athenz.SignedPolicy{{
				Name: name, Modified: at,
				Assertions: []athenz.SignedAssertion{{Role: role, Resource: resource, Action: action, Effect: effect, ID: id}},
			}}},
			ZMSKeyID: zmsKeyID, ZMSSignature: zmsSig, Modified: at, Expires: at,
		}
		rts := rdl.NewTimestamp(at.Time)
		theirs := &zts.SignedPolicyData{
			PolicyData: &zts.PolicyData{Domain: zts.DomainName(domain), Policies: []*zts.Policy{{
				Name: zts.ResourceName(name), Modified: &rts,
				Assertions: []*zts.Assertion{{Role: role, Resource: resource, Action: action, Effect: zEffect, Id: &id}},
			}}},
			ZmsKeyId: zmsKeyID, ZmsSignature: zmsSig, Modified: rts, Expires: rts,
		}
		want, err := util.ToCanonicalString(theirs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := athenz.CanonicalSignedPolicyData(ours)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("signed canonical differs\nathenz: %s\n  ours: %s", want, got)
		}
		wantPolicy, err := util.ToCanonicalString(theirs.PolicyData)
		if err != nil {
			t.Fatal(err)
		}
		gotPolicy, err := athenz.CanonicalPolicyData(&ours.PolicyData)
		if err != nil || string(gotPolicy) != wantPolicy {
			t.Fatalf("policy canonical differs (%v)\nathenz: %s\n  ours: %s", err, wantPolicy, gotPolicy)
		}
	})
}
