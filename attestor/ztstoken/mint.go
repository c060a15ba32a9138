package ztstoken

import (
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Issuer is the iss and the aud of register tokens: ZTS's own provider service.
const Issuer = "sys.auth.zts"

// TokenType is the JWS typ of register tokens. Verify compares it ignoring case.
const TokenType = "JWT"

// MaxTokenLength is the longest register token, in bytes, that Verify reads; a real one
// is under 1 KiB.
const MaxTokenLength = 8 << 10

// maxIDLength bounds the jti; Mint writes a 36-character UUID.
const maxIDLength = 128

// Claims are the claims of a register token, with Athenz's JSON names.
type Claims struct {
	// ID (jti) identifies the token for single use. Mint fills a random UUID when empty.
	ID string `json:"jti"`
	// Subject (sub) is "<domain>.<service>". Mint fills it when empty.
	Subject string `json:"sub"`
	// IssuedAt (iat) is the issue time in unix seconds. Required.
	IssuedAt int64 `json:"iat"`
	// Issuer (iss) and Audience (aud) are Issuer ("sys.auth.zts"). Mint fills them when
	// empty.
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	// Provider is the provider the token may register with. Required.
	Provider string `json:"provider"`
	// Domain and Service name the service the token registers. Required.
	Domain  string `json:"domain"`
	Service string `json:"service"`
	// InstanceID is the instance the token registers; the CSR must carry exactly this id.
	// Required.
	InstanceID string `json:"instance_id"`
	// ClientID is the principal that asked for the token, for audit. Optional.
	ClientID string `json:"client_id,omitempty"`
}

// Mint signs a register token for the issuer. claims is not modified; its empty ID,
// Subject, Issuer and Audience are filled as Claims describes, and the result must pass
// the checks Verify applies to a token's shape (valid names, an instance id the CSR can
// carry, sub = domain.service). signer is the issuer's token key (a hardware or KMS
// signer works) and kid its key id in the issuer's KeySet; the algorithm follows the key:
// ES256, ES384, ES512 or RS256.
func Mint(claims *Claims, signer crypto.Signer, kid string) (string, error) {
	if claims == nil {
		return "", errors.New("mint register token: no claims")
	}
	if kid == "" || len(kid) > 256 {
		return "", errors.New("mint register token: kid must be 1 to 256 bytes")
	}
	c := *claims
	if c.ID == "" {
		id, err := newUUID()
		if err != nil {
			return "", fmt.Errorf("mint register token: %w", err)
		}
		c.ID = id
	}
	if c.Subject == "" {
		c.Subject = athenz.Principal(c.Domain, c.Service)
	}
	if c.Issuer == "" {
		c.Issuer = Issuer
	}
	if c.Audience == "" {
		c.Audience = Issuer
	}
	if err := c.check(); err != nil {
		return "", fmt.Errorf("mint register token: %w", err)
	}
	payload, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("mint register token: %w", err)
	}
	tok, err := athenz.SignJWS(signer, athenz.JWSHeader{Kid: kid, Typ: TokenType}, payload)
	if err != nil {
		return "", fmt.Errorf("mint register token: %w", err)
	}
	return tok, nil
}

// check applies the shape rules shared by Mint and Verify.
func (c *Claims) check() error {
	switch {
	case c.ID == "" || len(c.ID) > maxIDLength || !printableASCII(c.ID):
		return fmt.Errorf("jti must be 1 to %d printable ASCII characters", maxIDLength)
	case c.IssuedAt <= 0:
		return errors.New("iat must be a positive unix time")
	case c.Issuer == "" || c.Audience == "":
		return errors.New("iss and aud are required")
	}
	if err := athenz.ValidateServiceName(c.Provider); err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	if err := athenz.ValidateDomainName(c.Domain); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	if err := athenz.ValidateSimpleName(c.Service); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if _, _, err := athenz.ParseInstanceIDURI(athenz.InstanceIDURI(c.Provider, c.InstanceID)); err != nil {
		return fmt.Errorf("instance_id: %w", err)
	}
	if c.Subject != athenz.Principal(c.Domain, c.Service) {
		return fmt.Errorf("sub %.200q does not name domain.service %q", c.Subject, athenz.Principal(c.Domain, c.Service))
	}
	if c.ClientID != "" && (len(c.ClientID) > athenz.MaxNameLength || !printableASCII(c.ClientID)) {
		return errors.New("client_id must be printable ASCII")
	}
	return nil
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID, the jti form ZTS uses.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
