package sds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Issuer is what the identity manager needs from the certificate issuer: the ZTS calls
// SIA makes. cmd/athenz-mesh implements it over issuer.Client; the manager never sees
// HTTP. Methods that take a client Credential call the issuer over mTLS presenting it
// (the identity's current certificate and key). Errors the issuer answered with a
// refusal (a 4xx: bad request, not authenticated, forbidden, not found) wrap ErrRefused,
// so the manager can tell "try another way" (register again) from "try again later".
// Implementations are safe for concurrent use.
type Issuer interface {
	// Register registers an instance (ZTS POST /instance), with no client certificate:
	// the attestation data is the credential.
	Register(ctx context.Context, req *RegisterRequest) (*IssuedIdentity, error)
	// Refresh renews an instance's certificate over mTLS with its current one (ZTS POST
	// /instance/{provider}/{domain}/{service}/{instanceId}).
	Refresh(ctx context.Context, client *Credential, req *RefreshRequest) (*IssuedIdentity, error)
	// RoleCertificate asks for a role certificate (ZTS POST /rolecert) and returns it as
	// PEM.
	RoleCertificate(ctx context.Context, client *Credential, req *RoleCertRequest) ([]byte, error)
	// AccessToken asks for an OAuth2 access token (ZTS POST /oauth2/token).
	AccessToken(ctx context.Context, client *Credential, req AccessTokenRequest) (*Token, error)
	// RoleToken asks for a role token (ZTS GET /domain/{d}/token).
	RoleToken(ctx context.Context, client *Credential, req RoleTokenRequest) (*Token, error)
}

// isRefused reports whether err is the issuer refusing the request itself (400, 401,
// 403, 404), as opposed to failing or limiting it (5xx, 429, no answer).
func isRefused(err error) bool {
	var se IssuerStatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.IssuerStatus() {
	case 400, 401, 403, 404:
		return true
	}
	return false
}

// RegisterRequest is an instance registration.
type RegisterRequest struct {
	Provider, Domain, Service string
	// AttestationData is the evidence, as the Collector returned it. Secret.
	AttestationData string
	// CSR is the PEM certificate request.
	CSR []byte
	// Validity is the lifetime asked for; zero lets the issuer choose.
	Validity time.Duration
	// Namespace is the SPIFFE namespace asked for; empty: none.
	Namespace string
}

// RefreshRequest is an instance refresh.
type RefreshRequest struct {
	Provider, Domain, Service, InstanceID string
	CSR                                   []byte
	Validity                              time.Duration
}

// RoleCertRequest is a role certificate request; the role is the CSR's CN.
type RoleCertRequest struct {
	CSR      []byte
	Validity time.Duration
}

// IssuedIdentity is the issuer's answer to Register and Refresh.
type IssuedIdentity struct {
	// InstanceID is the instance id the issuer recorded.
	InstanceID string
	// CertificatePEM is the service certificate, possibly followed by intermediates.
	CertificatePEM []byte
	// SignerPEM is ZTS's x509CertificateSigner: the CA chain and roots. Empty: the trust
	// bundle is left as it was (as SIA does).
	SignerPEM []byte
}

// KeyType is the kind of private key the manager generates.
type KeyType string

// The key types.
const (
	// KeyECDSAP256 is ECDSA on P-256, the default: much cheaper to issue than RSA.
	KeyECDSAP256 KeyType = "ecdsa-p256"
	// KeyRSA2048 is RSA with a 2048-bit modulus, as SIA generates.
	KeyRSA2048 KeyType = "rsa-2048"
)

// RoleSpec names a role certificate to keep: "<Domain>:role.<Role>".
type RoleSpec struct {
	Domain, Role string
}

// IdentitySpec is one identity the manager keeps: an Athenz service and how to prove it.
type IdentitySpec struct {
	// Domain and Service name the identity. Required.
	Domain, Service string
	// Provider is the provider service the identity registers through (the issuer's
	// providers[].name, or sys.auth.zts). Required.
	Provider string
	// InstanceID is the instance id put in the CSR. Empty: taken from the attestation
	// data when InstanceFromK8sToken is set; otherwise required.
	InstanceID string
	// InstanceFromK8sToken reads the instance id (the pod UID) and the namespace from the
	// Kubernetes service-account token the Collector returns, as the issuer's k8s
	// attestor proves them.
	InstanceFromK8sToken bool
	// Namespace is the SPIFFE namespace of the trust-domain SPIFFE form. Empty: the
	// token's (InstanceFromK8sToken), else athenz.DefaultSpiffeNamespace.
	Namespace string
	// KeyType is the key to generate. Zero: KeyECDSAP256.
	KeyType KeyType
	// Collector produces the attestation data for registering. Required.
	Collector attestor.Collector
	// Validity is the certificate lifetime asked for. Zero: the issuer's default.
	Validity time.Duration
	// Roles are the role certificates to keep, issued with the identity's key.
	Roles []RoleSpec
	// RoleValidity is the role certificate lifetime asked for. Zero: the issuer's.
	RoleValidity time.Duration

	// istio, set for node identities with NodeIdentities.Istio, obtains the certificate
	// from the Istio CA API instead of the ZTS API.
	istio *NodeIstio
}

// Name returns the identity's principal, "<domain>.<service>".
func (s *IdentitySpec) Name() string { return athenz.Principal(s.Domain, s.Service) }

func (s *IdentitySpec) validate() error {
	var errs []error
	if err := athenz.ValidateDomainName(s.Domain); err != nil {
		errs = append(errs, err)
	}
	if err := athenz.ValidateSimpleName(s.Service); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if err := athenz.ValidateServiceName(s.Provider); err != nil {
		errs = append(errs, fmt.Errorf("provider: %w", err))
	}
	if s.InstanceID == "" && !s.InstanceFromK8sToken {
		errs = append(errs, errors.New("an instance id is required"))
	}
	switch s.KeyType {
	case "", KeyECDSAP256, KeyRSA2048:
	default:
		errs = append(errs, fmt.Errorf("key type %q: want %q or %q", s.KeyType, KeyECDSAP256, KeyRSA2048))
	}
	if s.Collector == nil {
		errs = append(errs, errors.New("an attestation collector is required"))
	}
	if s.istio != nil {
		if s.istio.CA == nil {
			errs = append(errs, errors.New("the Istio CA API client is required"))
		}
		if len(s.Roles) > 0 {
			errs = append(errs, errors.New("role certificates cannot be had through the Istio CA API"))
		}
	}
	for _, r := range s.Roles {
		if !athenz.IsDomainName(r.Domain) || !athenz.IsEntityName(r.Role) {
			errs = append(errs, fmt.Errorf("role %q: not a valid <domain>:role.<role>", athenz.JoinRoleName(r.Domain, r.Role)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("identity %s: %w", s.Name(), err)
	}
	return nil
}

// Clock is the manager's time source. Tests inject one they advance by hand.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a function that
	// stops it.
	After(d time.Duration) (<-chan time.Time, func())
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
func (wallClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// ManagerConfig configures a Manager. Zero values are documented and usable.
type ManagerConfig struct {
	// Identities are the identities to keep (sidecar mode). Node mode adds the
	// identities workloads ask for (ManagerDeps.Node).
	Identities []IdentitySpec
	// DNSSuffixes are the suffixes of the DNS SAN <service>.<domain-dashed>.<suffix> in
	// service CSRs; they must be among the issuer's certificates.dns_suffixes. Empty: no
	// DNS SAN.
	DNSSuffixes []string
	// SpiffeTrustDomain, when set, selects the SPIFFE form
	// spiffe://<td>/ns/<namespace>/sa/<domain>.<service> (the issuer's
	// certificates.spiffe_trust_domain must be the same). Empty: spiffe://<domain>/sa/<service>.
	SpiffeTrustDomain string
	// TrustDomains are the SPIFFE trust domains the bundle anchors (Bundle.TrustDomains).
	// Empty: with NodeIdentities.Istio, its trust domain (and SpiffeTrustDomain when set);
	// else SpiffeTrustDomain when set, else the domain of every identity and role.
	TrustDomains []string
	// RenewAfter and RenewBefore bound the point, as fractions of the lifetime, where a
	// certificate is renewed: uniformly at random between them. The lifetime counts from
	// when the certificate was received when that is after its NotBefore (which CAs
	// backdate). Zero: 0.5 and 0.75.
	RenewAfter, RenewBefore float64
	// RetryMin and RetryMax bound the exponential backoff after a failure (with jitter:
	// each wait is between half and all of min(RetryMin·2ⁿ, RetryMax)). RetryMin is also
	// the least time between two issuances of the same certificate. Zero: 1 s and 5 min.
	RetryMin, RetryMax time.Duration
	// Timeout bounds one call to the issuer. Zero: 30 s.
	Timeout time.Duration
	// NodeIdleGrace is how long, in node mode, an identity nobody asks for any more is
	// kept (and renewed) before it is dropped. Zero: 10 min.
	NodeIdleGrace time.Duration
}

// ManagerDeps are the Manager's collaborators.
type ManagerDeps struct {
	// Issuer issues certificates and tokens. Required.
	Issuer Issuer
	// Sink receives every certificate, key, bundle and role certificate. Required.
	Sink SecretSink
	// Files, when set, also writes them in the SIA file layout.
	Files *Files
	// Node, when set, makes the manager follow the identities workloads ask for.
	Node *NodeIdentities
	// Logger receives the manager's log. Nil: discarded.
	Logger *slog.Logger
	// Registerer receives the manager's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Clock is the time source. Nil: the wall clock.
	Clock Clock
	// Rand returns uniform numbers in [0, 1) for jitter. Nil: math/rand/v2.
	Rand func() float64
}

// Manager is the agent's identity manager: for each identity it generates a key on this
// machine, registers with the issuer using attestation, refreshes over mTLS before the
// certificate expires, keeps role certificates, and hands every credential to the
// SecretSink (and the Files). It keeps serving a certificate while it is valid however
// long the issuer is unreachable, and withdraws it when it expires. It implements
// TokenFetcher with the identities' current certificates. Safe for concurrent use.
type Manager struct {
	cfg     ManagerConfig
	issuer  Issuer
	sink    SecretSink
	files   *Files
	node    *NodeIdentities
	log     *slog.Logger
	clock   Clock
	rand    func() float64
	randMu  sync.Mutex
	metrics *managerMetrics

	mu         sync.Mutex
	states     map[string]*identityState
	bundle     *Bundle
	trustExtra map[string]bool // trust domains derived from identities and roles
}

var _ TokenFetcher = (*Manager)(nil)

// NewManager checks the configuration and returns a Manager. Nothing is issued until Run
// (or Once).
func NewManager(cfg ManagerConfig, deps ManagerDeps) (*Manager, error) {
	if deps.Issuer == nil || deps.Sink == nil {
		return nil, errors.New("identity manager: Issuer and Sink are required")
	}
	if err := cfg.defaults(deps.Node != nil); err != nil {
		return nil, fmt.Errorf("identity manager: %w", err)
	}
	m := &Manager{
		cfg: cfg, issuer: deps.Issuer, sink: deps.Sink, files: deps.Files, node: deps.Node,
		log: deps.Logger, clock: deps.Clock, rand: deps.Rand,
		states: make(map[string]*identityState), trustExtra: make(map[string]bool),
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.clock == nil {
		m.clock = wallClock{}
	}
	if m.rand == nil {
		m.rand = rand.Float64
	}
	for i := range cfg.Identities {
		spec := cfg.Identities[i]
		m.states[spec.Name()] = newIdentityState(spec)
	}
	var err error
	if m.metrics, err = newManagerMetrics(deps.Registerer, m); err != nil {
		return nil, err
	}
	if m.node != nil {
		m.node.mu.Lock()
		m.node.rebound = m.rebindNode
		m.node.mu.Unlock()
	}
	return m, nil
}

func (cfg *ManagerConfig) defaults(node bool) error {
	var errs []error
	if len(cfg.Identities) == 0 && !node {
		errs = append(errs, errors.New("at least one identity is required"))
	}
	seen := map[string]bool{}
	for i := range cfg.Identities {
		s := &cfg.Identities[i]
		s.Domain, s.Service, s.Provider = strings.ToLower(s.Domain), strings.ToLower(s.Service), strings.ToLower(s.Provider)
		if err := s.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[s.Name()] {
			errs = append(errs, fmt.Errorf("identity %s is configured twice", s.Name()))
		}
		seen[s.Name()] = true
	}
	if cfg.RenewAfter == 0 {
		cfg.RenewAfter = 0.5
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = 0.75
	}
	if cfg.RenewAfter <= 0 || cfg.RenewBefore > 0.95 || cfg.RenewAfter > cfg.RenewBefore {
		errs = append(errs, fmt.Errorf("renewal window %.2f–%.2f: want 0 < after ≤ before ≤ 0.95", cfg.RenewAfter, cfg.RenewBefore))
	}
	cfg.RetryMin = cmp0(cfg.RetryMin, time.Second)
	cfg.RetryMax = cmp0(cfg.RetryMax, 5*time.Minute)
	if cfg.RetryMax < cfg.RetryMin {
		errs = append(errs, fmt.Errorf("retry max %s is below retry min %s", cfg.RetryMax, cfg.RetryMin))
	}
	cfg.Timeout = cmp0(cfg.Timeout, 30*time.Second)
	cfg.NodeIdleGrace = cmp0(cfg.NodeIdleGrace, 10*time.Minute)
	return errors.Join(errs...)
}

// cmp0 returns v, or def when v is zero or negative.
func cmp0(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Identities returns the names of the identities the manager keeps now, sorted.
func (m *Manager) Identities() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.states))
	for n := range m.states {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (m *Manager) state(name string) *identityState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[name]
}

// Run keeps every identity until ctx is done, then returns nil. Each identity renews on
// its own schedule; one failing never delays the others.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range m.Identities() {
		st := m.state(name)
		m.loadFromFiles(st)
		wg.Go(func() { m.keep(ctx, st) })
	}
	if m.node != nil {
		wg.Go(func() { m.followDemand(ctx) })
	}
	wg.Wait()
	return nil
}

// AccessToken implements TokenFetcher over mTLS with identity's current certificate. An
// identity without a valid certificate gives an error wrapping ErrIdentityUnavailable.
func (m *Manager) AccessToken(ctx context.Context, identity string, req AccessTokenRequest) (*Token, error) {
	cred, err := m.clientCredential(identity)
	if err != nil {
		return nil, err
	}
	tok, err := m.issuer.AccessToken(ctx, cred, req)
	m.metrics.count("access_token", err)
	return tok, err
}

// RoleToken implements TokenFetcher over mTLS with identity's current certificate.
func (m *Manager) RoleToken(ctx context.Context, identity string, req RoleTokenRequest) (*Token, error) {
	cred, err := m.clientCredential(identity)
	if err != nil {
		return nil, err
	}
	tok, err := m.issuer.RoleToken(ctx, cred, req)
	m.metrics.count("role_token", err)
	return tok, err
}

// clientCredential returns the current, unexpired credential of an identity.
func (m *Manager) clientCredential(identity string) (*Credential, error) {
	st := m.state(identity)
	if st == nil {
		return nil, fmt.Errorf("%w: %s is not an identity of this agent", ErrIdentityUnavailable, identity)
	}
	cur := st.current()
	if cur == nil || !m.clock.Now().Before(cur.leaf().NotAfter) {
		return nil, fmt.Errorf("%w: %s has no valid certificate", ErrIdentityUnavailable, identity)
	}
	return cur.cred, nil
}

// jitter returns a uniform number in [0, 1).
func (m *Manager) jitter() float64 {
	m.randMu.Lock()
	defer m.randMu.Unlock()
	return m.rand()
}

// leafOf returns the first certificate of a credential.
func leafOf(c *Credential) *x509.Certificate { return c.Chain[0] }
