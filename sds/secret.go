package sds

import (
	"fmt"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// SecretTypeURL is the xDS type URL of SDS resources.
const SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// SPIFFEValidatorName is the name of Envoy's SPIFFE certificate validator extension.
const SPIFFEValidatorName = "envoy.tls.cert_validator.spiffe"

// ValidationMode says how validation-context secrets (the trust bundle) are written.
type ValidationMode int

// The validation-context modes.
const (
	// ValidationAuto (the zero value) writes each name the way its client expects:
	// ROOTCA (Istio) as trusted_ca, spiffe://<td>/ns/athenz/ca/default (Athenz SIA) as
	// Envoy's SPIFFE validator.
	ValidationAuto ValidationMode = iota
	// ValidationTrustedCA writes every validation context as trusted_ca: the roots
	// inline, checked by Envoy's default validator (SAN matching is the listener's or
	// cluster's business).
	ValidationTrustedCA
	// ValidationSPIFFE writes every validation context as Envoy's SPIFFE validator
	// (custom_validator_config envoy.tls.cert_validator.spiffe) with one trust domain
	// entry per Bundle.TrustDomains (plus the one in the name for the SIA CA name), each
	// with every root.
	ValidationSPIFFE
)

// String names the mode as configuration files write it.
func (m ValidationMode) String() string {
	switch m {
	case ValidationAuto:
		return "auto"
	case ValidationTrustedCA:
		return "trusted_ca"
	case ValidationSPIFFE:
		return "spiffe"
	}
	return fmt.Sprintf("ValidationMode(%d)", int(m))
}

// ParseValidationMode reads "auto", "trusted_ca" or "spiffe"; "" is auto.
func ParseValidationMode(s string) (ValidationMode, error) {
	switch s {
	case "", "auto":
		return ValidationAuto, nil
	case "trusted_ca":
		return ValidationTrustedCA, nil
	case "spiffe":
		return ValidationSPIFFE, nil
	}
	return 0, fmt.Errorf("validation mode %q: want auto, trusted_ca or spiffe", s)
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// tlsCertificateSecret builds the Secret for a certificate chain and its key.
func tlsCertificateSecret(name string, e *CredentialEntry) (*anypb.Any, error) {
	s := &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(e.ChainPEM),
			PrivateKey:       inline(e.KeyPEM),
		}},
	}
	return packSecret(s)
}

// validationSecret builds a validation-context Secret. spiffe selects Envoy's SPIFFE
// validator, with one entry per trust domain; it is never built without roots or, in
// SPIFFE mode, without trust domains.
func validationSecret(name string, b *BundleEntry, spiffe bool, trustDomains []string) (*anypb.Any, error) {
	if len(b.RootsPEM) == 0 {
		return nil, fmt.Errorf("bundle has no roots")
	}
	vc := &tlsv3.CertificateValidationContext{}
	if !spiffe {
		vc.TrustedCa = inline(b.RootsPEM)
	} else {
		if len(trustDomains) == 0 {
			return nil, fmt.Errorf("SPIFFE validator needs trust domains and the bundle names none")
		}
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		for _, td := range trustDomains {
			cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
				Name:        td,
				TrustBundle: inline(b.RootsPEM),
			})
		}
		if err := cfg.ValidateAll(); err != nil {
			return nil, fmt.Errorf("SPIFFE validator config: %w", err)
		}
		typed, err := anypb.New(cfg)
		if err != nil {
			return nil, err
		}
		vc.CustomValidatorConfig = &corev3.TypedExtensionConfig{Name: SPIFFEValidatorName, TypedConfig: typed}
	}
	return packSecret(&tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}})
}

// packSecret validates a Secret against its proto constraints and packs it.
func packSecret(s *tlsv3.Secret) (*anypb.Any, error) {
	if err := s.ValidateAll(); err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.GetName(), err)
	}
	return anypb.New(s)
}

// secretMemo keeps each built Secret so that a rotation pushed to a thousand streams, or
// ten thousand FetchSecrets a second, encode it once. An entry is keyed by the requested
// name and the cache entry it came from, and replaced when that entry's version changes.
// The memo is bounded: past maxMemo entries it is emptied (rebuilding is cheap), so
// clients cannot grow it without bound by varying names.
type secretMemo struct {
	mu sync.Mutex
	m  map[memoKey]memoVal
}

// maxMemo bounds secretMemo.
const maxMemo = 4096

type memoKey struct {
	name string // the requested resource name (the Secret's name)
	src  string // the cache entry: identity, role or bundle
}

type memoVal struct {
	version uint64
	any     *anypb.Any
}

// get returns the Secret for (name, src) at version, building it when the memo has none
// or an older one.
func (m *secretMemo) get(k memoKey, version uint64, build func() (*anypb.Any, error)) (*anypb.Any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.m[k]; ok && v.version == version {
		return v.any, nil
	}
	a, err := build()
	if err != nil {
		return nil, err
	}
	if m.m == nil || len(m.m) >= maxMemo {
		m.m = make(map[memoKey]memoVal)
	}
	m.m[k] = memoVal{version: version, any: a}
	return a, nil
}
