package athenz

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Shared reading and checking of the two ";"-separated Athenz token formats, n-tokens
// (principal tokens) and role tokens. Both are "k=v;k=v;...;s=<ybase64 signature>", the
// signature covering exactly the bytes before ";s=".

// Defaults applied to n-tokens and role tokens, as the Athenz Java servers and ZPE apply
// them.
const (
	// DefaultTokenSkew is the clock skew allowed on a token's issue time (and on the far
	// end of its lifetime): Athenz's allowedOffset of 300 seconds.
	DefaultTokenSkew = 300 * time.Second
	// DefaultTokenMaxLifetime is the longest lifetime accepted, Athenz's
	// athenz.token_max_expiry default of 30 days.
	DefaultTokenMaxLifetime = 30 * 24 * time.Hour
)

// signatureTag separates the signed part of a token from its signature.
const signatureTag = ";s="

// maxTokenFields bounds the number of fields in a token, far above the 13 a role token
// can carry, so that a hostile token cannot make the duplicate check quadratic.
const maxTokenFields = 32

// tokenField is one k=v pair of a token, in the order the token lists it.
type tokenField struct {
	key, value string
}

// readSignedToken reads a token: it splits off the signature (splitSignedToken), cuts the
// signed part into fields (splitTokenFields, which refuses unknown, repeated and empty
// fields before any value is looked at) and hands each field to set in the token's order,
// stopping at set's first error. It returns the exact signed bytes and the signature.
func readSignedToken(kind, s string, maxLen int, known func(string) bool, set func(key, value string) error) (unsigned, sig string, err error) {
	unsigned, sig, err = splitSignedToken(kind, s, maxLen)
	if err != nil {
		return "", "", err
	}
	fields, err := splitTokenFields(kind, unsigned, known)
	if err != nil {
		return "", "", err
	}
	for _, f := range fields {
		if err := set(f.key, f.value); err != nil {
			return "", "", err
		}
	}
	return unsigned, sig, nil
}

// tokenBuilder writes a token's k=v fields, ';'-separated, in the order they are added.
type tokenBuilder struct {
	b strings.Builder
}

// add adds the field k=v.
func (t *tokenBuilder) add(k, v string) {
	if t.b.Len() > 0 {
		t.b.WriteByte(';')
	} else {
		t.b.Grow(256)
	}
	t.b.WriteString(k)
	t.b.WriteByte('=')
	t.b.WriteString(v)
}

// addIf adds an optional field when its value is set.
func (t *tokenBuilder) addIf(k, v string) {
	if v != "" {
		t.add(k, v)
	}
}

// addTime adds a time in whole unix seconds.
func (t *tokenBuilder) addTime(k string, v time.Time) {
	t.add(k, strconv.FormatInt(v.Unix(), 10))
}

// sign returns the fields followed by ";s=" and their ybase64 signature by key.
func (t *tokenBuilder) sign(key crypto.Signer) (string, error) {
	unsigned := t.b.String()
	sig, err := SignYBase64(key, []byte(unsigned))
	if err != nil {
		return "", err
	}
	return unsigned + signatureTag + sig, nil
}

// splitSignedToken cuts s at its first ";s=" into the signed bytes and the ybase64
// signature. The signature is checked for its alphabet only; it is decoded when verified,
// so that documented tokens with placeholder signatures still parse. Anything after the
// signature (the ";bk=...;bs=..." tail of Athenz authorized-service tokens) is refused.
func splitSignedToken(kind, s string, maxLen int) (unsigned, sig string, err error) {
	if len(s) > maxLen {
		return "", "", fmt.Errorf("%s: %w: %d bytes, limit %d", kind, ErrTokenMalformed, len(s), maxLen)
	}
	i := strings.Index(s, signatureTag)
	if i < 0 {
		return "", "", fmt.Errorf("%s: %w: no signature (want ...;s=<signature>)", kind, ErrTokenMalformed)
	}
	unsigned, sig = s[:i], s[i+len(signatureTag):]
	if sig == "" {
		return "", "", fmt.Errorf("%s: %w: empty signature", kind, ErrTokenMalformed)
	}
	for j := range len(sig) {
		if !ybase64Byte[sig[j]] {
			if sig[j] == ';' {
				return "", "", fmt.Errorf("%s: %w: data after the signature (authorized-service tokens are not supported)", kind, ErrTokenMalformed)
			}
			return "", "", fmt.Errorf("%s: %w: invalid character %s in the signature", kind, ErrTokenMalformed, describeByte(sig, j))
		}
	}
	return unsigned, sig, nil
}

// splitTokenFields cuts the signed part into k=v fields. Every field must have a known
// key, a non-empty value without '=' and must not repeat. Athenz's own parsers are looser
// (the Java one silently skips fields whose value is empty or holds '=', the Go one keeps
// them, both let a repeated key override the earlier one, and both ignore unknown keys);
// no Athenz builder ever writes such fields, and refusing them means no two parsers can
// read one signed token differently, and a field meant as a restriction is never ignored.
func splitTokenFields(kind, unsigned string, known func(string) bool) ([]tokenField, error) {
	if unsigned == "" {
		return nil, fmt.Errorf("%s: %w: no fields before the signature", kind, ErrTokenMalformed)
	}
	fields := make([]tokenField, 0, 12)
	for part := range strings.SplitSeq(unsigned, ";") {
		key, value, ok := strings.Cut(part, "=")
		switch {
		case !ok || key == "":
			return nil, fmt.Errorf("%s: %w: field %.40q is not key=value", kind, ErrTokenMalformed, part)
		case value == "":
			return nil, fmt.Errorf("%s: %w: field %q has an empty value", kind, ErrTokenMalformed, key)
		case strings.IndexByte(value, '=') >= 0:
			return nil, fmt.Errorf("%s: %w: value of field %q contains '='", kind, ErrTokenMalformed, key)
		case !known(key):
			return nil, fmt.Errorf("%s: %w: unknown field %.40q", kind, ErrTokenMalformed, key)
		case len(fields) == maxTokenFields:
			return nil, fmt.Errorf("%s: %w: more than %d fields", kind, ErrTokenMalformed, maxTokenFields)
		}
		for _, f := range fields {
			if f.key == key {
				return nil, fmt.Errorf("%s: %w: field %q appears twice", kind, ErrTokenMalformed, key)
			}
		}
		fields = append(fields, tokenField{key, value})
	}
	return fields, nil
}

// parseUnixSeconds reads a token time: 1 to 18 decimal digits, no sign.
func parseUnixSeconds(kind, key, v string) (time.Time, error) {
	if len(v) > 18 || !allDigits(v) {
		return time.Time{}, fmt.Errorf("%s: %w: field %q is not a unix time in seconds: %.40q", kind, ErrTokenMalformed, key, v)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w: field %q: %v", kind, ErrTokenMalformed, key, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isTokenWord reports whether s is 1 to max bytes of [A-Za-z0-9._-] (plus any bytes in
// extra): the shape of key ids, salts and host names in tokens. It keeps ';', '=' and
// anything that needs escaping out of the fields.
func isTokenWord(s string, max int, extra string) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if nameByte[c] || c == '.' || c == '-' || strings.IndexByte(extra, c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Token field checks shared by n-tokens and role tokens. Each returns nil or a short
// reason for the caller to wrap.
func checkKeyID(v string) error {
	if !isTokenWord(v, 128, "") {
		return fmt.Errorf("key id %.40q: want 1 to 128 of [A-Za-z0-9._-]", v)
	}
	return nil
}

func checkSalt(v string) error {
	if !isTokenWord(v, 64, "") {
		return fmt.Errorf("salt %.40q: want 1 to 64 of [A-Za-z0-9._-]", v)
	}
	return nil
}

func checkHost(v string) error {
	if !isTokenWord(v, 255, "") {
		return fmt.Errorf("host %.40q: want a host name of at most 255 bytes", v)
	}
	return nil
}

func checkIP(v string) error {
	if len(v) > 64 {
		return fmt.Errorf("ip address of %d bytes", len(v))
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return fmt.Errorf("ip address %.40q: %v", v, err)
	}
	return nil
}

// checkOptionalFields checks the salt, host and IP address of a token, each when set.
func checkOptionalFields(salt, host, ip string) error {
	if salt != "" {
		if err := checkSalt(salt); err != nil {
			return err
		}
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			return err
		}
	}
	if ip != "" {
		return checkIP(ip)
	}
	return nil
}

// fillSalt sets an empty *salt to 16 random hex characters, as both Athenz builders make
// salts.
func fillSalt(salt *string) error {
	if *salt != "" {
		return nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("salt: %w", err)
	}
	*salt = hex.EncodeToString(b[:])
	return nil
}

// checkTokenTimes applies Athenz's Token.validate rules: the issue time may be at most
// skew in the future, the expiry must not have passed, and the token may not expire
// more than maxLife (+ skew) from now. It is stricter in two ways that no real token
// notices: the expiry may not precede the issue time, and the lifetime from issue to
// expiry may not exceed maxLife either.
func checkTokenTimes(kind string, issued, expires, now time.Time, skew, maxLife time.Duration) error {
	switch {
	case expires.Before(issued):
		return fmt.Errorf("%s: %w: expires at %d, before its issue time %d", kind, ErrTokenMalformed, expires.Unix(), issued.Unix())
	case issued.After(now.Add(skew)):
		return fmt.Errorf("%s: %w: issued at %d, now is %d (skew %s)", kind, ErrTokenNotYetValid, issued.Unix(), now.Unix(), skew)
	case now.After(expires):
		return fmt.Errorf("%s: %w: expired at %d, now is %d", kind, ErrTokenExpired, expires.Unix(), now.Unix())
	case expires.Sub(issued) > maxLife:
		return fmt.Errorf("%s: %w: lifetime %s, limit %s", kind, ErrTokenLifetime, expires.Sub(issued), maxLife)
	case expires.After(now.Add(maxLife + skew)):
		return fmt.Errorf("%s: %w: expires at %d, more than %s from now", kind, ErrTokenLifetime, expires.Unix(), maxLife)
	}
	return nil
}

// orDefault returns d when v is not positive.
func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}
