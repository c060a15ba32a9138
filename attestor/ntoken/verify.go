package ntoken

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// ServiceKeys finds the public keys registered for services in their domain data
// (services[].publicKeys[] of the domain files); the issuer implements it. Names are
// passed in lower case. It must be safe for concurrent use and should answer from
// memory: Verify calls it on every request.
type ServiceKeys interface {
	ServicePublicKey(domain, service, keyID string) (crypto.PublicKey, bool)
}

// Config configures a Verifier. Keys is required; every other zero value means the
// documented default.
type Config struct {
	// Keys are the services' registered public keys. Required.
	Keys ServiceKeys
	// Skew is the clock skew allowed on the token's issue time. Zero:
	// athenz.DefaultTokenSkew (300 s, as Athenz).
	Skew time.Duration
	// MaxLifetime is the longest token lifetime accepted. Zero:
	// athenz.DefaultTokenMaxLifetime (30 days, as Athenz). zts-svccert makes 10-minute
	// tokens; a deployment that only uses the agent's collector may lower this.
	MaxLifetime time.Duration
	// MaxValidity is Result.MaxValidity. Zero: no cap from this attestor.
	MaxValidity time.Duration
}

// Verifier verifies service n-tokens. It is safe for concurrent use.
type Verifier struct {
	cfg  Config
	opts athenz.NTokenOptions
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Keys == nil:
		return nil, errors.New("n-token verifier: service keys are required")
	case cfg.Skew < 0 || cfg.MaxLifetime < 0 || cfg.MaxValidity < 0:
		return nil, errors.New("n-token verifier: skew, max lifetime and max validity must not be negative")
	}
	return &Verifier{cfg: cfg, opts: athenz.NTokenOptions{Skew: cfg.Skew, MaxLifetime: cfg.MaxLifetime}}, nil
}

// Recognizes reports whether data has the shape of an n-token: "v=" first and a ";s="
// signature, as both Athenz builders write them.
func (v *Verifier) Recognizes(data string) bool { return looksLikeNToken(data) }

func looksLikeNToken(s string) bool {
	return strings.HasPrefix(s, "v=") && strings.Contains(s, ";s=") && len(s) <= athenz.MaxNTokenLength
}

// Verify checks a service n-token: its shape (athenz.ParseNToken; user tokens and tokens
// signed by a server key, z=zms|zts, are refused), its domain and service against the
// request, the key registered for (domain, service, k), its times and signature
// (athenz.NToken.Verify), and finally that the CSR's public key is that registered key
// (PKIX DER compared). The instance id is the request's, unproven: an n-token proves the
// service, not an instance. The Result is not refreshable.
func (v *Verifier) Verify(ctx context.Context, r *attestor.Request) (*attestor.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, attestor.Unavailable("n-token verification", err)
	}
	n, err := athenz.ParseNToken(r.AttestationData)
	if err != nil {
		return nil, attestor.Wrap(attestor.ReasonMalformed, err, "attestation data is not a readable n-token")
	}
	switch {
	case !strings.HasPrefix(n.Version, "S"):
		return nil, attestor.Refusef(attestor.ReasonMalformed, "n-token version %q is not a service token", n.Version)
	case n.KeyService != "":
		return nil, attestor.Refusef(attestor.ReasonMalformed, "n-token is signed by the %q server key, not the service's own key", n.KeyService)
	}
	domain, service := strings.ToLower(n.Domain), strings.ToLower(n.Name)
	if err := r.MatchService(domain, service); err != nil {
		return nil, err
	}
	pub, ok := v.cfg.Keys.ServicePublicKey(domain, service, n.KeyID)
	if !ok || pub == nil {
		return nil, attestor.Refusef(attestor.ReasonUnknownKey, "service %s has no registered public key %.100q", athenz.Principal(domain, service), n.KeyID)
	}
	if err := n.Verify(pub, r.Time(), v.opts); err != nil {
		return nil, verifyError(err)
	}
	if err := sameKey(r.PublicKey, pub); err != nil {
		return nil, err
	}
	attrs := map[string]string{"key_id": n.KeyID}
	if n.Hostname != "" {
		attrs["hostname"] = n.Hostname
	}
	return &attestor.Result{
		Domain:      domain,
		Service:     service,
		InstanceID:  r.InstanceID,
		Refreshable: false,
		MaxValidity: v.cfg.MaxValidity,
		Attributes:  attrs,
	}, nil
}

// verifyError maps the athenz verification sentinels to refusal reasons.
func verifyError(err error) *attestor.Error {
	switch {
	case errors.Is(err, athenz.ErrTokenExpired):
		return attestor.Wrap(attestor.ReasonExpired, err, "n-token has expired")
	case errors.Is(err, athenz.ErrTokenNotYetValid):
		return attestor.Wrap(attestor.ReasonNotYetValid, err, "n-token is issued in the future")
	case errors.Is(err, athenz.ErrTokenLifetime):
		return attestor.Wrap(attestor.ReasonMalformed, err, "n-token lifetime is longer than allowed")
	case errors.Is(err, athenz.ErrUnsupportedKey):
		return attestor.Wrap(attestor.ReasonUnknownKey, err, "the registered key cannot verify n-tokens")
	}
	return attestor.Wrap(attestor.ReasonBadSignature, err, "n-token signature does not verify")
}

// sameKey requires the CSR key to be the registered key. Comparing the PKIX DER encodings
// is exact for RSA and ECDSA keys (ZTS compares the PEM texts, which is the same).
func sameKey(csrKey, registered crypto.PublicKey) error {
	if csrKey == nil {
		return attestor.Refusef(attestor.ReasonMalformed, "the request carries no CSR public key to compare with the registered key")
	}
	a, err := x509.MarshalPKIXPublicKey(csrKey)
	if err != nil {
		return attestor.Wrap(attestor.ReasonMalformed, err, fmt.Sprintf("the CSR public key (%T) cannot be encoded", csrKey))
	}
	b, err := x509.MarshalPKIXPublicKey(registered)
	if err != nil || !bytes.Equal(a, b) {
		return attestor.Refusef(attestor.ReasonKeyMismatch, "the CSR public key is not the key registered for the service")
	}
	return nil
}
