package athenz

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Assertion effects, exactly as the ZTS schema spells them. The Go ZTS client refuses any
// other spelling, lower case included.
const (
	EffectAllow = "ALLOW"
	EffectDeny  = "DENY"
)

// DomainSignedPolicyData is the body of ZTS GET /domain/{domain}/signed_policy_data: a
// domain's active policies, signed by ZTS. Signature is the ybase64 signature, by the ZTS
// key named KeyID, over CanonicalSignedPolicyData(&SignedPolicyData).
type DomainSignedPolicyData struct {
	SignedPolicyData SignedPolicyData `json:"signedPolicyData"`
	Signature        string           `json:"signature"`
	KeyID            string           `json:"keyId"`
}

// SignedPolicyData is the part of DomainSignedPolicyData that the ZTS signature covers.
// ZMSSignature is the ybase64 signature, by the ZMS key named ZMSKeyID, over
// CanonicalPolicyData(&PolicyData); athenz-authorizer always checks it. Modified is the
// domain's modification time and doubles as the ETag; Expires bounds how long verifiers
// may use the data.
type SignedPolicyData struct {
	PolicyData   PolicyData `json:"policyData"`
	ZMSSignature string     `json:"zmsSignature,omitempty"`
	ZMSKeyID     string     `json:"zmsKeyId,omitempty"`
	Modified     Timestamp  `json:"modified"`
	Expires      Timestamp  `json:"expires"`
}

// PolicyData lists a domain's policies. A nil Policies marshals as [] (as ZTS sends it),
// which verifiers treat exactly like an absent array.
type PolicyData struct {
	Domain   string         `json:"domain"`
	Policies []SignedPolicy `json:"policies"`
}

// SignedPolicy is one policy as ZTS publishes it: name, optional modification time and
// assertions, nothing else (no version, active or caseSensitive). A zero Modified is
// left out; a nil Assertions marshals as [].
type SignedPolicy struct {
	Name       string            `json:"name"`
	Modified   Timestamp         `json:"modified,omitzero"`
	Assertions []SignedAssertion `json:"assertions"`
}

// SignedAssertion is one assertion as ZTS publishes it. Effect should always be set
// (EffectAllow or EffectDeny): it is left out when empty, and verifiers read a missing
// effect as ALLOW. ID is left out when zero; the legacy endpoint never sends it.
type SignedAssertion struct {
	Role     string `json:"role"`
	Resource string `json:"resource"`
	Action   string `json:"action"`
	Effect   string `json:"effect,omitempty"`
	ID       int64  `json:"id,omitempty"`
}

// MarshalJSON writes a nil Policies as [] rather than null.
func (p PolicyData) MarshalJSON() ([]byte, error) {
	type plain PolicyData
	if p.Policies == nil {
		p.Policies = []SignedPolicy{}
	}
	return json.Marshal(plain(p))
}

// MarshalJSON writes a nil Assertions as [] rather than null.
func (p SignedPolicy) MarshalJSON() ([]byte, error) {
	type plain SignedPolicy
	if p.Assertions == nil {
		p.Assertions = []SignedAssertion{}
	}
	return json.Marshal(plain(p))
}

// Validate checks what the Athenz Go ZTS client checks when it decodes the document
// (required fields, the domain and policy name patterns, the effect spelling), so that a
// document passing Validate is accepted by real clients, and upstream data that real
// clients would refuse is refused here too. It does not check signatures or expiry.
func (d *DomainSignedPolicyData) Validate() error {
	if d.Signature == "" {
		return errors.New("signed policy data: signature is required")
	}
	if d.KeyID == "" {
		return errors.New("signed policy data: keyId is required")
	}
	return d.SignedPolicyData.Validate()
}

// Validate checks the fields of SignedPolicyData and its PolicyData; see
// DomainSignedPolicyData.Validate.
func (s *SignedPolicyData) Validate() error {
	if s.Modified.IsZero() {
		return errors.New("signed policy data: modified is required")
	}
	if s.Expires.IsZero() {
		return errors.New("signed policy data: expires is required")
	}
	if err := ValidateDomainName(s.PolicyData.Domain); err != nil {
		return fmt.Errorf("signed policy data: %w", err)
	}
	for i, p := range s.PolicyData.Policies {
		if err := ValidateResourceName(p.Name); err != nil {
			return fmt.Errorf("signed policy data: policies[%d]: %w", i, err)
		}
		for j, a := range p.Assertions {
			if err := a.validate(); err != nil {
				return fmt.Errorf("signed policy data: policy %s: assertions[%d]: %w", p.Name, j, err)
			}
		}
	}
	return nil
}

func (a *SignedAssertion) validate() error {
	switch {
	case a.Role == "":
		return errors.New("role is required")
	case a.Resource == "":
		return errors.New("resource is required")
	case a.Action == "":
		return errors.New("action is required")
	}
	switch a.Effect {
	case "", EffectAllow, EffectDeny:
		return nil
	}
	return fmt.Errorf("effect %q: want %q or %q", a.Effect, EffectAllow, EffectDeny)
}

// The canonical* types fix the bytes that signatures cover. Their fields are declared in
// alphabetical order, so encoding/json writes sorted keys, and their tags reproduce the
// structs Athenz's Go verifiers re-marshal (utils/zpe-updater/util): the signature fields
// always present, every other empty value left out.
type (
	canonicalSignedPolicyData struct {
		Expires      string               `json:"expires"`
		Modified     string               `json:"modified"`
		PolicyData   *canonicalPolicyData `json:"policyData"`
		ZMSKeyID     string               `json:"zmsKeyId"`
		ZMSSignature string               `json:"zmsSignature"`
	}
	canonicalPolicyData struct {
		Domain   string            `json:"domain,omitempty"`
		Policies []canonicalPolicy `json:"policies,omitempty"`
	}
	canonicalPolicy struct {
		Assertions []canonicalAssertion `json:"assertions,omitempty"`
		Modified   string               `json:"modified,omitempty"`
		Name       string               `json:"name,omitempty"`
	}
	canonicalAssertion struct {
		Action   string `json:"action,omitempty"`
		Effect   string `json:"effect,omitempty"`
		ID       int64  `json:"id,omitempty"`
		Resource string `json:"resource,omitempty"`
		Role     string `json:"role,omitempty"`
	}
)

// canonicalForm converts p, refusing a document without a domain: the Go verifiers would
// silently drop the key, and no signature over such a document means anything.
func canonicalForm(p *PolicyData) (*canonicalPolicyData, error) {
	if p.Domain == "" {
		return nil, errors.New("policy data: domain is required")
	}
	c := &canonicalPolicyData{Domain: validUTF8(p.Domain)}
	if len(p.Policies) > 0 {
		c.Policies = make([]canonicalPolicy, len(p.Policies))
	}
	for i, pol := range p.Policies {
		cp := canonicalPolicy{Modified: pol.Modified.String(), Name: validUTF8(pol.Name)}
		if len(pol.Assertions) > 0 {
			cp.Assertions = make([]canonicalAssertion, len(pol.Assertions))
		}
		for j, a := range pol.Assertions {
			cp.Assertions[j] = canonicalAssertion{
				Action: validUTF8(a.Action), Effect: validUTF8(a.Effect), ID: a.ID,
				Resource: validUTF8(a.Resource), Role: validUTF8(a.Role),
			}
		}
		c.Policies[i] = cp
	}
	return c, nil
}

// CanonicalPolicyData returns the bytes a ZMS signature (SignedPolicyData.ZMSSignature)
// covers: p as compact JSON with keys sorted at every level, only the fields listed in
// athenz-compat.md §4.5, empty arrays and a zero policy modified time left out, id only
// when non-zero, and encoding/json's escaping (so "<" is written \u003c). The output is
// byte-identical to Athenz's util.ToCanonicalString for the same document.
func CanonicalPolicyData(p *PolicyData) ([]byte, error) {
	if p == nil {
		return nil, errors.New("canonical policy data: nil document")
	}
	c, err := canonicalForm(p)
	if err != nil {
		return nil, fmt.Errorf("canonical %w", err)
	}
	return json.Marshal(c)
}

// CanonicalSignedPolicyData returns the bytes the ZTS signature
// (DomainSignedPolicyData.Signature) covers: the rules of CanonicalPolicyData, plus
// "zmsKeyId" and "zmsSignature" always present (as "" when empty) and timestamps with
// exactly three fractional digits. Modified and Expires are required.
func CanonicalSignedPolicyData(s *SignedPolicyData) ([]byte, error) {
	if s == nil {
		return nil, errors.New("canonical signed policy data: nil document")
	}
	if s.Modified.IsZero() || s.Expires.IsZero() {
		return nil, errors.New("canonical signed policy data: modified and expires are required")
	}
	c, err := canonicalForm(&s.PolicyData)
	if err != nil {
		return nil, fmt.Errorf("canonical signed %w", err)
	}
	return json.Marshal(canonicalSignedPolicyData{
		Expires:      s.Expires.String(),
		Modified:     s.Modified.String(),
		PolicyData:   c,
		ZMSKeyID:     validUTF8(s.ZMSKeyID),
		ZMSSignature: validUTF8(s.ZMSSignature),
	})
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with U+FFFD. Verifiers
// receive JSON in which encoding/json has already made that replacement (as the escape
// \ufffd), decode it to the rune, and re-marshal the rune literally; signing the raw
// string would give the escape instead, and the signature would not verify.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// SignZMS sets ZMSKeyID to keyID and ZMSSignature to key's signature over
// CanonicalPolicyData(&s.PolicyData), as ZMS would. Call it before Sign, whose signature
// covers both fields.
func (s *SignedPolicyData) SignZMS(key crypto.Signer, keyID string) error {
	data, err := CanonicalPolicyData(&s.PolicyData)
	if err != nil {
		return err
	}
	sig, err := SignYBase64(key, data)
	if err != nil {
		return fmt.Errorf("sign policy data: %w", err)
	}
	s.ZMSKeyID, s.ZMSSignature = keyID, sig
	return nil
}

// VerifyZMS checks ZMSSignature against pub, the ZMS public key the caller looked up by
// ZMSKeyID. Errors wrap ErrBadSignature when the signature is missing or wrong.
func (s *SignedPolicyData) VerifyZMS(pub crypto.PublicKey) error {
	data, err := CanonicalPolicyData(&s.PolicyData)
	if err != nil {
		return err
	}
	if err := VerifyYBase64(pub, data, s.ZMSSignature); err != nil {
		return fmt.Errorf("zms signature (key %q): %w", s.ZMSKeyID, err)
	}
	return nil
}

// Sign returns s signed with the ZTS key named keyID, ready to serve. The result holds a
// copy of s that shares its policy slices, so do not modify them after signing.
func (s *SignedPolicyData) Sign(key crypto.Signer, keyID string) (*DomainSignedPolicyData, error) {
	data, err := CanonicalSignedPolicyData(s)
	if err != nil {
		return nil, err
	}
	sig, err := SignYBase64(key, data)
	if err != nil {
		return nil, fmt.Errorf("sign signed policy data: %w", err)
	}
	return &DomainSignedPolicyData{SignedPolicyData: *s, Signature: sig, KeyID: keyID}, nil
}

// Verify checks Signature against pub, the ZTS public key the caller looked up by KeyID.
// Errors wrap ErrBadSignature when the signature is missing or wrong. Expiry is the
// caller's to check, against its own clock.
func (d *DomainSignedPolicyData) Verify(pub crypto.PublicKey) error {
	data, err := CanonicalSignedPolicyData(&d.SignedPolicyData)
	if err != nil {
		return err
	}
	if err := VerifyYBase64(pub, data, d.Signature); err != nil {
		return fmt.Errorf("zts signature (key %q): %w", d.KeyID, err)
	}
	return nil
}
