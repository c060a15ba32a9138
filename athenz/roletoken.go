package athenz

import (
	"crypto"
	"errors"
	"fmt"
	"strconv"
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
	unsigned, sig, err := splitSignedToken(kind, s, MaxRoleTokenLength)
	if err != nil {
		return nil, err
	}
	fields, err := splitTokenFields(kind, unsigned, roleTokenKnown)
	if err != nil {
		return nil, err
	}
	t := &RoleToken{KeyID: "0", unsigned: unsigned, signature: sig}
	for _, f := range fields {
		switch f.key {
		case "v":
			t.Version = f.value
		case "d":
			t.Domain = f.value
		case "r":
			if n := strings.Count(f.value, ",") + 1; n > maxRoleTokenRoles {
				return nil, fmt.Errorf("%s: %w: %d roles, limit %d", kind, ErrTokenMalformed, n, maxRoleTokenRoles)
			}
			t.Roles = strings.Split(f.value, ",")
		case "c":
			if f.value != "1" {
				return nil, fmt.Errorf("%s: %w: c=%.10q, want c=1 or no c field", kind, ErrTokenMalformed, f.value)
			}
			t.CompleteRoleSet = true
		case "p":
			t.Principal = f.value
		case "h":
			t.Host = f.value
		case "proxy":
			t.ProxyUser = f.value
		case "a":
			t.Salt = f.value
		case "t":
			t.IssueTime, err = parseUnixSeconds(kind, f.key, f.value)
		case "e":
			t.ExpiryTime, err = parseUnixSeconds(kind, f.key, f.value)
		case "k":
			t.KeyID = f.value
		case "i":
			t.IP = f.value
		}
		if err != nil {
			return nil, err
		}
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
	if t.Salt != "" {
		if err := checkSalt(t.Salt); err != nil {
			return err
		}
	}
	if t.Host != "" {
		if err := checkHost(t.Host); err != nil {
			return err
		}
	}
	if t.IP != "" {
		return checkIP(t.IP)
	}
	return nil
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
	if r.Salt == "" {
		salt, err := newSalt()
		if err != nil {
			return "", fmt.Errorf("sign role token: %w", err)
		}
		r.Salt = salt
	}
	if err := r.check(); err != nil {
		return "", fmt.Errorf("sign role token: %w", err)
	}
	var b strings.Builder
	b.Grow(256)
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	add("v", r.Version)
	add("d", r.Domain)
	add("r", strings.Join(r.Roles, ","))
	if r.CompleteRoleSet {
		add("c", "1")
	}
	if r.Principal != "" {
		add("p", r.Principal)
	}
	if r.Host != "" {
		add("h", r.Host)
	}
	if r.ProxyUser != "" {
		add("proxy", r.ProxyUser)
	}
	add("a", r.Salt)
	add("t", strconv.FormatInt(r.IssueTime.Unix(), 10))
	add("e", strconv.FormatInt(r.ExpiryTime.Unix(), 10))
	add("k", r.KeyID)
	if r.IP != "" {
		add("i", r.IP)
	}
	unsigned := b.String()
	sig, err := SignYBase64(key, []byte(unsigned))
	if err != nil {
		return "", fmt.Errorf("sign role token: %w", err)
	}
	return unsigned + signatureTag + sig, nil
}
