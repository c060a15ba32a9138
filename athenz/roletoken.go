package athenz

import (
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxRoleTokenLength is the longest role token, in bytes, that ParseRoleToken reads. A
// token listing every role of a large domain (c=1) can run to kilobytes; 64 KiB is more
// than any proxy forwards in one header (Envoy's default limit for all request headers
// is 60 KiB), so nothing longer can be a real request.
const MaxRoleTokenLength = 64 << 10

// RoleTokenVersion is the only role token version Athenz issues.
const RoleTokenVersion = "Z1"

// maxRoleTokenRoles bounds the roles in one token.
const maxRoleTokenRoles = 4096

// RoleToken is an Athenz role token (v=Z1, header Athenz-Role-Auth): ZTS states that a
// principal holds some roles in a domain, signed with a ZTS key.
//
// As a builder, fill the fields and call Sign. As a parse result (ParseRoleToken), the
// fields are what the token says, checked for shape only, and must not be used before
// Verify (or VerifyRoleToken) has returned nil. Not safe for concurrent mutation; a
// parsed token may be read and verified concurrently.
type RoleToken struct {
	// Version is "Z1" (v); Sign uses it when empty and ParseRoleToken accepts nothing else.
	Version string
	// Domain is the domain the roles belong to (d).
	Domain string
	// Roles are short role names (r), without the "<domain>:role." prefix. At least one.
	Roles []string
	// CompleteRoleSet (c=1) says Roles are all the principal's roles in Domain.
	CompleteRoleSet bool
	// Principal (p) is who the token was issued to; optional in the format, always set
	// by ZTS.
	Principal string
	// Host (h) is the ZTS host that issued the token, optional.
	Host string
	// ProxyUser (proxy) is the authorized proxy that asked on Principal's behalf.
	ProxyUser string
	// Salt (a); Sign fills 16 random hex characters when empty.
	Salt string
	// IssueTime (t) and ExpiryTime (e), whole unix seconds, both required.
	IssueTime  time.Time
	ExpiryTime time.Time
	// KeyID (k) names the ZTS key; ParseRoleToken gives "0", the Java default, when the
	// token has no k field.
	KeyID string
	// IP (i) is the client address ZTS saw, optional.
	IP string

	unsigned  string
	signature string
}

func roleTokenKnown(k string) bool {
	switch k {
	case "v", "d", "r", "c", "p", "h", "proxy", "a", "t", "e", "k", "i":
		return true
	}
	return false
}

// ParseRoleToken reads a role token by key, keeping the exact signed bytes for Verify.
// It refuses tokens over MaxRoleTokenLength, unsigned tokens, unknown, repeated or empty
// fields (including empty role list entries), c values other than 1, data after the
// signature and names of the wrong shape; errors wrap ErrTokenMalformed. The result is
// NOT verified.
func ParseRoleToken(s string) (*RoleToken, error) {
	const kind = "role token"
	t := &RoleToken{KeyID: "0"}
	var err error
	t.unsigned, t.signature, err = readSignedToken(kind, s, MaxRoleTokenLength, roleTokenKnown, func(key, value string) (err error) {
		switch key {
		case "v":
			t.Version = value
		case "d":
			t.Domain = value
		case "r":
			if n := strings.Count(value, ",") + 1; n > maxRoleTokenRoles {
				return fmt.Errorf("%s: %w: %d roles, limit %d", kind, ErrTokenMalformed, n, maxRoleTokenRoles)
			}
			t.Roles = strings.Split(value, ",")
		case "c":
			if value != "1" {
				return fmt.Errorf("%s: %w: c=%.10q, want c=1 or no c field", kind, ErrTokenMalformed, value)
			}
			t.CompleteRoleSet = true
		case "p":
			t.Principal = value
		case "h":
			t.Host = value
		case "proxy":
			t.ProxyUser = value
		case "a":
			t.Salt = value
		case "t":
			t.IssueTime, err = parseUnixSeconds(kind, key, value)
		case "e":
			t.ExpiryTime, err = parseUnixSeconds(kind, key, value)
		case "k":
			t.KeyID = value
		case "i":
			t.IP = value
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", kind, ErrTokenMalformed, err)
	}
	return t, nil
}

// check applies the field rules shared by ParseRoleToken and Sign.
func (t *RoleToken) check() error {
	switch {
	case t.Version != RoleTokenVersion:
		return fmt.Errorf("version %.40q, want %q", t.Version, RoleTokenVersion)
	case !IsDomainName(t.Domain):
		return ValidateDomainName(t.Domain)
	case len(t.Roles) == 0:
		return errors.New("no roles (r)")
	case len(t.Roles) > maxRoleTokenRoles:
		return fmt.Errorf("%d roles, limit %d", len(t.Roles), maxRoleTokenRoles)
	case t.IssueTime.IsZero() || t.ExpiryTime.IsZero():
		return errors.New("issue time (t) and expiry time (e) are required")
	case t.IssueTime.Unix() < 0 || t.ExpiryTime.Unix() < 0:
		return errors.New("issue and expiry times must not precede 1970")
	}
	for _, r := range t.Roles {
		if !IsEntityName(r) {
			return fmt.Errorf("role: %w", ValidateEntityName(r))
		}
	}
	for _, p := range []string{t.Principal, t.ProxyUser} {
		if p != "" && !IsServiceName(p) {
			return fmt.Errorf("principal: %w", ValidateServiceName(p))
		}
	}
	if err := checkKeyID(t.KeyID); err != nil {
		return err
	}
	return checkOptionalFields(t.Salt, t.Host, t.IP)
}

// Verify checks a parsed role token: the times against now with Athenz's rules
// (DefaultTokenSkew on the issue time, no skew on the expiry, DefaultTokenMaxLifetime),
// then the signature over exactly the bytes before ";s=" under keys(KeyID), which should
// return a ZTS public key. Errors wrap ErrUnknownKey, ErrTokenExpired, ErrTokenNotYetValid,
// ErrTokenLifetime, ErrBadSignature or ErrUnsupportedKey. On success Domain, Roles,
// Principal, ExpiryTime and KeyID are what ZTS vouched for. Safe for concurrent use if
// keys is.
func (t *RoleToken) Verify(keys func(keyID string) (crypto.PublicKey, bool), now time.Time) error {
	if t.unsigned == "" {
		return errors.New("role token: Verify needs a token from ParseRoleToken")
	}
	if err := checkTokenTimes("role token", t.IssueTime, t.ExpiryTime, now, DefaultTokenSkew, DefaultTokenMaxLifetime); err != nil {
		return err
	}
	pub, ok := keys(t.KeyID)
	if !ok || pub == nil {
		return fmt.Errorf("role token: %w: key id %q", ErrUnknownKey, t.KeyID)
	}
	if err := VerifyYBase64(pub, []byte(t.unsigned), t.signature); err != nil {
		return fmt.Errorf("role token for domain %s: %w", t.Domain, err)
	}
	return nil
}

// VerifyRoleToken parses and verifies s in one step (see ParseRoleToken and Verify) and
// returns the token only when it verifies.
func VerifyRoleToken(s string, keys func(keyID string) (crypto.PublicKey, bool), now time.Time) (*RoleToken, error) {
	t, err := ParseRoleToken(s)
	if err != nil {
		return nil, err
	}
	if err := t.Verify(keys, now); err != nil {
		return nil, err
	}
	return t, nil
}

// Sign returns the signed token in the Java ZTS field order,
// v,d,r,[c],[p],[h],[proxy],a,t,e,k,[i],s, signed with key (normally the ZTS key named
// KeyID). Version defaults to "Z1" and Salt to 16 random hex characters; the receiver is
// not modified. The fields must pass the same checks as ParseRoleToken, and KeyID is
// required.
func (t *RoleToken) Sign(key crypto.Signer) (string, error) {
	r := *t
	if r.Version == "" {
		r.Version = RoleTokenVersion
	}
	if err := fillSalt(&r.Salt); err != nil {
		return "", fmt.Errorf("sign role token: %w", err)
	}
	if err := r.check(); err != nil {
		return "", fmt.Errorf("sign role token: %w", err)
	}
	var b tokenBuilder
	b.add("v", r.Version)
	b.add("d", r.Domain)
	b.add("r", strings.Join(r.Roles, ","))
	if r.CompleteRoleSet {
		b.add("c", "1")
	}
	b.addIf("p", r.Principal)
	b.addIf("h", r.Host)
	b.addIf("proxy", r.ProxyUser)
	b.add("a", r.Salt)
	b.addTime("t", r.IssueTime)
	b.addTime("e", r.ExpiryTime)
	b.add("k", r.KeyID)
	b.addIf("i", r.IP)
	tok, err := b.sign(key)
	if err != nil {
		return "", fmt.Errorf("sign role token: %w", err)
	}
	return tok, nil
}
