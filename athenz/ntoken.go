package athenz

import (
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxNTokenLength is the longest n-token, in bytes, that ParseNToken reads. A real one is
// about 300 bytes with an ECDSA key and 450 with RSA-4096; the limit leaves room for long
// host names while keeping hostile header values cheap to refuse.
const MaxNTokenLength = 8 << 10

// The n-token versions Athenz issues.
const (
	// NTokenVersionService marks a service token, signed with the service's own key.
	NTokenVersionService = "S1"
	// NTokenVersionUser marks a user token, signed by ZMS.
	NTokenVersionUser = "U1"
)

// Where the keys of the Athenz servers themselves are registered (see KeySource).
const (
	SysAuthDomain = "sys.auth"
	ZMSService    = "zms"
	ZTSService    = "zts"
)

// NToken is an Athenz principal token ("n-token", header Athenz-Principal-Auth): a
// service or user names itself and signs the claim with a registered key.
//
// As a builder, fill the fields and call Sign. As a parse result (ParseNToken), the
// fields are what the token says, checked for shape only: nothing in it is trustworthy
// until Verify has returned nil for the key KeySource names. An NToken is not safe for
// concurrent mutation; a parsed one may be read and verified concurrently.
type NToken struct {
	// Version is "S1" for a service or "U1" for a user (field v). Sign uses "S1" when empty.
	Version string
	// Domain is the principal's domain (d), e.g. "sports" or "user".
	Domain string
	// Name is the service or user name within Domain (n), a SimpleName.
	Name string
	// KeyID is the id of the key that signs the token (k), as registered in Athenz.
	// ParseNToken gives "0", the Java default, when the token has no k field.
	KeyID string
	// Hostname is the host the token was made on (h), optional.
	Hostname string
	// IP is the host's IP address (i), optional. Note that the Go ZTS client validates a
	// returned serviceToken against the SignedToken pattern [a-zA-Z0-9._%=;,-]*, which an
	// IPv6 address (':') breaks; leave it empty in tokens the issuer hands out.
	IP string
	// KeyService (z), optional, says the token is signed by a server key: "zms" or "zts".
	KeyService string
	// Salt (a) makes each token unique; Sign fills 16 random hex characters when empty.
	Salt string
	// IssueTime (t) and ExpiryTime (e) are whole unix seconds; both are required.
	IssueTime  time.Time
	ExpiryTime time.Time

	unsigned  string // the exact signed bytes, set by ParseNToken
	signature string
}

// NTokenOptions tunes (*NToken).Verify. The zero value applies Athenz's defaults.
type NTokenOptions struct {
	// Skew is the clock skew allowed on the issue time and on the far end of the
	// lifetime; zero or negative means DefaultTokenSkew (300 s). The expiry itself gets
	// no skew, as in Athenz.
	Skew time.Duration
	// MaxLifetime is the longest lifetime accepted; zero or negative means
	// DefaultTokenMaxLifetime (30 days).
	MaxLifetime time.Duration
}

// nTokenKnown lists the n-token fields this package reads. Athenz also defines o
// (original requestor) and b (authorized services, with a second signature after the
// first); those are refused rather than ignored, since b restricts who may use the token.
func nTokenKnown(k string) bool {
	switch k {
	case "v", "d", "n", "k", "z", "h", "i", "a", "t", "e":
		return true
	}
	return false
}

// ParseNToken reads an n-token by key, in whatever order its fields come (the Go and
// Java builders order them differently), and keeps the exact signed bytes for Verify.
// It refuses tokens over MaxNTokenLength, unsigned tokens, unknown, repeated or empty
// fields, data after the signature, and names, times, key ids, hosts and addresses of
// the wrong shape; errors wrap ErrTokenMalformed. The result is NOT verified.
func ParseNToken(s string) (*NToken, error) {
	const kind = "n-token"
	n := &NToken{KeyID: "0"}
	var err error
	n.unsigned, n.signature, err = readSignedToken(kind, s, MaxNTokenLength, nTokenKnown, func(key, value string) (err error) {
		switch key {
		case "v":
			n.Version = value
		case "d":
			n.Domain = value
		case "n":
			n.Name = value
		case "k":
			n.KeyID = value
		case "z":
			n.KeyService = value
		case "h":
			n.Hostname = value
		case "i":
			n.IP = value
		case "a":
			n.Salt = value
		case "t":
			n.IssueTime, err = parseUnixSeconds(kind, key, value)
		case "e":
			n.ExpiryTime, err = parseUnixSeconds(kind, key, value)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := n.check(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", kind, ErrTokenMalformed, err)
	}
	return n, nil
}

// check applies the field rules shared by ParseNToken and Sign.
func (n *NToken) check() error {
	switch {
	case !isNTokenVersion(n.Version):
		return fmt.Errorf("version %.40q: want S or U followed by digits, such as %q", n.Version, NTokenVersionService)
	case !IsDomainName(n.Domain):
		return ValidateDomainName(n.Domain)
	case !IsSimpleName(n.Name):
		return ValidateSimpleName(n.Name)
	case n.IssueTime.IsZero() || n.ExpiryTime.IsZero():
		return errors.New("issue time (t) and expiry time (e) are required")
	case n.IssueTime.Unix() < 0 || n.ExpiryTime.Unix() < 0:
		return errors.New("issue and expiry times must not precede 1970")
	}
	if err := checkKeyID(n.KeyID); err != nil {
		return err
	}
	if n.KeyService != "" && !IsSimpleName(n.KeyService) {
		return ValidateSimpleName(n.KeyService)
	}
	return checkOptionalFields(n.Salt, n.Hostname, n.IP)
}

func isNTokenVersion(v string) bool {
	return len(v) >= 2 && len(v) <= 4 && (v[0] == 'S' || v[0] == 'U') && allDigits(v[1:])
}

// Principal returns the principal the token names, "<domain>.<name>".
func (n *NToken) Principal() string { return n.Domain + "." + n.Name }

// KeySource says whose registered public key verifies the token, following the Athenz
// servers and the zmssvctoken validator: z=zms, or a user token (version "U..."), means
// the ZMS key (sys.auth.zms); z=zts means the ZTS key (sys.auth.zts); anything else means
// the principal's own key. keyID is always the token's key id. The caller looks that key
// up and passes it to Verify; verifying with any other key proves nothing.
func (n *NToken) KeySource() (domain, service, keyID string) {
	switch {
	case n.KeyService == ZMSService, n.KeyService == "" && strings.HasPrefix(n.Version, "U"):
		return SysAuthDomain, ZMSService, n.KeyID
	case n.KeyService == ZTSService:
		return SysAuthDomain, ZTSService, n.KeyID
	}
	return n.Domain, n.Name, n.KeyID
}

// Verify checks a parsed token: its times against now (see NTokenOptions; errors wrap
// ErrTokenNotYetValid, ErrTokenExpired or ErrTokenLifetime), then its signature over
// exactly the bytes before ";s=" under pub (errors wrap ErrBadSignature or
// ErrUnsupportedKey). pub must be the key KeySource names. Verify does not look keys up
// and does not cache; it is safe for concurrent use.
func (n *NToken) Verify(pub crypto.PublicKey, now time.Time, opts NTokenOptions) error {
	if n.unsigned == "" {
		return errors.New("n-token: Verify needs a token from ParseNToken")
	}
	skew := orDefault(opts.Skew, DefaultTokenSkew)
	maxLife := orDefault(opts.MaxLifetime, DefaultTokenMaxLifetime)
	if err := checkTokenTimes("n-token", n.IssueTime, n.ExpiryTime, now, skew, maxLife); err != nil {
		return err
	}
	if err := VerifyYBase64(pub, []byte(n.unsigned), n.signature); err != nil {
		return fmt.Errorf("n-token of %s: %w", n.Principal(), err)
	}
	return nil
}

// Sign returns the signed token in the Go builder's field order,
// v,d,n,k,[z],[h],[i],a,t,e,s, with key (RSA PKCS#1 v1.5 or ECDSA DER over SHA-256, in
// ybase64). Version defaults to "S1" and Salt to 16 random hex characters; the receiver is
// not modified. The fields must pass the same checks as ParseNToken, so anything Sign
// returns parses again. Sign does not check the lifetime: Verify does, at use.
func (n *NToken) Sign(key crypto.Signer) (string, error) {
	t := *n
	if t.Version == "" {
		t.Version = NTokenVersionService
	}
	if err := fillSalt(&t.Salt); err != nil {
		return "", fmt.Errorf("sign n-token: %w", err)
	}
	if err := t.check(); err != nil {
		return "", fmt.Errorf("sign n-token: %w", err)
	}
	var b tokenBuilder
	b.add("v", t.Version)
	b.add("d", t.Domain)
	b.add("n", t.Name)
	b.add("k", t.KeyID)
	b.addIf("z", t.KeyService)
	b.addIf("h", t.Hostname)
	b.addIf("i", t.IP)
	b.add("a", t.Salt)
	b.addTime("t", t.IssueTime)
	b.addTime("e", t.ExpiryTime)
	tok, err := b.sign(key)
	if err != nil {
		return "", fmt.Errorf("sign n-token: %w", err)
	}
	return tok, nil
}
