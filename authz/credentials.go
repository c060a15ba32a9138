package authz

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Who is calling: the Authenticator reads the request's credentials (access token, role
// token, role certificate, mTLS identity) in the configured order and returns the caller
// or a *CredentialError. It checks signatures, times, names and bindings; it does not
// check the peer certificate's chain, which Envoy verified during the TLS handshake (or,
// in HTTP mode with trust_xfcc, the proxy that wrote x-forwarded-client-cert).

// Input is a request as ext_authz sees it, from the gRPC CheckRequest or the HTTP mode.
type Input struct {
	Method, Path, Host string
	// Headers are the request headers with lower-case names; multiple values are joined
	// with ",".
	Headers map[string]string
	// SourcePrincipal is attributes.source.principal (or the XFCC URI in HTTP mode): the
	// peer certificate's URI SAN, or its subject when it has none.
	SourcePrincipal string
	// SourceCertificate is the URL-encoded PEM peer certificate, as Envoy sends it in
	// attributes.source.certificate (with include_peer_certificate) and in XFCC's Cert.
	SourceCertificate string
	// ContextExtensions are the route's context_extensions.
	ContextExtensions map[string]string
	// GRPCService and GRPCMethod are set for gRPC requests (content-type application/grpc).
	GRPCService, GRPCMethod string
}

// Caller is who is calling, as a credential says.
type Caller struct {
	// Principal is "domain.service". It is empty for a role token without p, for a role
	// SPIFFE ID without a certificate, and for a well-formed Istio identity that the
	// mapping does not name (the server then denies with unknown_principal).
	Principal string
	// TokenDomain, when set, means the roles come from the credential (token mode): an
	// access token's aud, a role token's d, a role certificate's domain.
	TokenDomain string
	// Roles are short role names in TokenDomain; nil for a bare mTLS identity, whose
	// roles come from membership.
	Roles []string
	// Source is the credential that identified the caller: SourceAccessToken,
	// SourceRoleToken, SourceRoleCert or SourceMTLS.
	Source string
}

// Limits on the credentials a request carries; a larger one is refused with a *_too_large
// reason before it is parsed.
const (
	// MaxTokenBytes bounds an access token (the part after "Bearer ") and a role token.
	// ZTS repeats the role names of an access token in scp and scope, so a token for a
	// few hundred roles runs past 16 KiB; 32 KiB leaves room and stays well inside
	// Envoy's default 60 KiB for all request headers.
	MaxTokenBytes = 32 << 10
	// MaxCertificateBytes bounds attributes.source.certificate (URL-encoded PEM). A leaf
	// certificate is 1 to 3 KiB as PEM, about a third more once URL-encoded.
	MaxCertificateBytes = 32 << 10
	// MaxPrincipalBytes bounds attributes.source.principal, as the athenz package bounds
	// identity URIs.
	MaxPrincipalBytes = 2 << 10
)

// Credential headers (lower case, as Input.Headers has them).
const (
	authorizationHeader = "authorization"
	roleTokenHeader     = "athenz-role-auth"
)

// Reasons of a *CredentialError. They are stable: metrics, logs and clients (in
// WWW-Authenticate's error_description) see them. Token failures are
// "access_token_<code>" and "role_token_<code>", with <code> one of tokenCodes (the codes
// of athenz.TokenErrorReason) or too_large.
const (
	// ReasonNoCredentials: the request carries no credential that a configured source
	// reads. The challenge should carry no error code (RFC 6750 section 3.1).
	ReasonNoCredentials = "no_credentials"
	// ReasonAccessTokenTooLarge and ReasonRoleTokenTooLarge: a token over MaxTokenBytes.
	ReasonAccessTokenTooLarge = "access_token_too_large"
	ReasonRoleTokenTooLarge   = "role_token_too_large"
	// ReasonCertificateTooLarge: attributes.source.certificate over MaxCertificateBytes.
	ReasonCertificateTooLarge = "certificate_too_large"
	// ReasonCertificateMalformed: the peer certificate is not URL-encoded PEM of exactly
	// one X.509 certificate.
	ReasonCertificateMalformed = "certificate_malformed"
	// ReasonCertificateIdentity: the peer certificate parses but names no valid Athenz
	// identity (athenz.PrincipalFromCertificate refused it).
	ReasonCertificateIdentity = "certificate_identity"
	// ReasonPrincipalMismatch: attributes.source.principal is not a name of the peer
	// certificate.
	ReasonPrincipalMismatch = "principal_mismatch"
	// ReasonInvalidPrincipal: the source principal is not a SPIFFE ID of a known form, or
	// maps to something that is not a valid Athenz principal.
	ReasonInvalidPrincipal = "invalid_principal"
	// ReasonRoleCertMixedDomains: a role certificate grants roles in more than one domain.
	ReasonRoleCertMixedDomains = "role_cert_mixed_domains"
)

// tokenCodes are the reason codes of athenz.TokenErrorReason.
var tokenCodes = []string{
	"malformed", "unsupported_algorithm", "wrong_type", "unknown_key", "unsupported_key",
	"bad_signature", "expired", "not_yet_valid", "lifetime_too_long", "wrong_issuer",
	"wrong_audience", "certificate_binding", "invalid",
}

// tokenReasons maps a source and a token code to its reason, built once so that a
// failure costs no string concatenation.
var tokenReasons = func() map[string]map[string]string {
	m := map[string]map[string]string{}
	for _, src := range []string{SourceAccessToken, SourceRoleToken} {
		m[src] = make(map[string]string, len(tokenCodes))
		for _, c := range tokenCodes {
			m[src][c] = src + "_" + c
		}
	}
	return m
}()

// CredentialReasons returns every reason a *CredentialError can carry, for pre-declaring
// metric label values.
func CredentialReasons() []string {
	r := []string{
		ReasonNoCredentials, ReasonAccessTokenTooLarge, ReasonRoleTokenTooLarge, ReasonCertificateTooLarge,
		ReasonCertificateMalformed, ReasonCertificateIdentity, ReasonPrincipalMismatch, ReasonInvalidPrincipal,
		ReasonRoleCertMixedDomains,
	}
	for _, src := range []string{SourceAccessToken, SourceRoleToken} {
		for _, c := range tokenCodes {
			r = append(r, tokenReasons[src][c])
		}
	}
	return r
}

// CredentialError is a missing or invalid credential: the request is answered 401.
type CredentialError struct {
	// Reason is a stable snake_case code (see ReasonNoCredentials and friends).
	Reason string
	// Source is the credential source that failed ("" for no_credentials and for peer
	// certificate problems found before any source was tried).
	Source string
	// Err is the cause, for logs. It may quote short, bounded parts of a credential (a
	// kid, an issuer, a domain) but never a token or its signature.
	Err error
}

// Error returns "credential [<source>]: <reason>[: <cause>]".
func (e *CredentialError) Error() string {
	var b strings.Builder
	b.WriteString("credential")
	if e.Source != "" {
		b.WriteString(" ")
		b.WriteString(e.Source)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is finds the athenz sentinels.
func (e *CredentialError) Unwrap() error { return e.Err }

func credErr(source, reason string, err error) *CredentialError {
	return &CredentialError{Reason: reason, Source: source, Err: err}
}

// tokenError turns a verification error into a CredentialError for source.
func tokenError(source string, err error) *CredentialError {
	reason, ok := tokenReasons[source][athenz.TokenErrorReason(err)]
	if !ok {
		reason = tokenReasons[source]["invalid"]
	}
	return credErr(source, reason, err)
}

// AuthenticatorOption adjusts NewAuthenticator.
type AuthenticatorOption func(*authOptions)

type authOptions struct {
	now    func() time.Time
	client *http.Client
	keys   athenz.KeySet
	log    *slog.Logger
}

// WithClock sets the clock tokens are checked against. Default: time.Now.
func WithClock(now func() time.Time) AuthenticatorOption {
	return func(o *authOptions) { o.now = now }
}

// WithHTTPClient sets the client that fetches credentials.access_token.jwks_url, for a
// private CA or a proxy. Default: the default transport with the system roots.
func WithHTTPClient(c *http.Client) AuthenticatorOption {
	return func(o *authOptions) { o.client = c }
}

// WithAccessTokenKeys verifies access tokens with keys (a *JWKS shared between
// authenticators, or a fixed set) instead of reading jwks_file or jwks_url, and turns
// access tokens on even when neither is configured. A *JWKS gets the request's context
// for an unknown-kid refetch.
func WithAccessTokenKeys(keys athenz.KeySet) AuthenticatorOption {
	return func(o *authOptions) { o.keys = keys }
}

// WithLogger sets the logger for key set changes and fetch failures. Default: discarded.
func WithLogger(l *slog.Logger) AuthenticatorOption {
	return func(o *authOptions) { o.log = l }
}

// Authenticator identifies callers from their credentials. It is safe for concurrent use.
type Authenticator struct {
	order   []string // enabled sources, in the order tried
	mapping *policy.Mapping
	now     func() time.Time

	accessKeys     athenz.KeySet // nil: access tokens off
	jwks           *JWKS         // the set NewAuthenticator built, for Run and status
	issuer         string
	audiences      []string
	skew           time.Duration
	requireBinding *bool

	roleKeys   map[string]crypto.PublicKey // empty: role tokens off
	roleKeyFor func(kid string) (crypto.PublicKey, bool)

	mtls     bool // the role_cert and mtls sources are on
	needCert bool // a source in order reads the peer certificate
}

// NewAuthenticator returns an Authenticator for cfg, mapping mTLS identities with m (nil:
// the default mapping). It reads the role token keys and the JWKS (a jwks_url is fetched
// once, bounded by DefaultJWKSFetchTimeout), so that an unreadable key stops the start.
//
// Sources are tried in cfg.Order (default access_token, role_token, role_cert, mtls); a
// source that is off (no JWKS, no role token keys, mtls disabled) is skipped and its
// header ignored. The first source whose credential is present decides: a present but
// invalid credential is an error, never a reason to try a weaker source.
func NewAuthenticator(cfg CredentialsConfig, m *policy.Mapping, opts ...AuthenticatorOption) (*Authenticator, error) {
	var o authOptions
	for _, opt := range opts {
		opt(&o)
	}
	a := &Authenticator{
		mapping:        m,
		now:            o.now,
		issuer:         cfg.AccessToken.Issuer,
		audiences:      cfg.AccessToken.Audiences,
		skew:           cfg.AccessToken.SkewOrDefault(),
		requireBinding: cfg.AccessToken.RequireBinding,
		mtls:           cfg.MTLS.IsEnabled(),
	}
	if a.now == nil {
		a.now = time.Now
	}
	switch {
	case o.keys != nil:
		a.accessKeys = o.keys
	case cfg.AccessToken.Enabled():
		ctx, cancel := context.WithTimeout(context.Background(), DefaultJWKSFetchTimeout)
		defer cancel()
		j, err := NewJWKS(ctx, JWKSOptions{
			File: cfg.AccessToken.JWKSFile, URL: cfg.AccessToken.JWKSURL,
			Client: o.client, Now: a.now, Logger: o.log,
		})
		if err != nil {
			return nil, fmt.Errorf("access token keys: %w", err)
		}
		a.accessKeys, a.jwks = j, j
	}
	var err error
	if a.roleKeys, err = readRoleTokenKeys(cfg.RoleToken.PublicKeys); err != nil {
		return nil, err
	}
	a.roleKeyFor = func(kid string) (crypto.PublicKey, bool) {
		k, ok := a.roleKeys[kid]
		return k, ok
	}
	for _, src := range cfg.OrderOrDefault() {
		on := false
		switch src {
		case SourceAccessToken:
			on = a.accessKeys != nil
		case SourceRoleToken:
			on = len(a.roleKeys) > 0
		case SourceRoleCert, SourceMTLS:
			on = a.mtls
		default:
			return nil, fmt.Errorf("credentials order: unknown source %q", src)
		}
		if on {
			a.order = append(a.order, src)
			a.needCert = a.needCert || src != SourceRoleToken
		}
	}
	return a, nil
}

// readRoleTokenKeys reads the ZTS public keys, by key id, from PEM files. A file may also
// hold the ybase64-encoded PEM that athenz.conf's ztsPublicKeys carry.
func readRoleTokenKeys(files map[string]string) (map[string]crypto.PublicKey, error) {
	keys := make(map[string]crypto.PublicKey, len(files))
	for _, id := range sortedKeys(files) {
		b, err := os.ReadFile(files[id])
		if err != nil {
			return nil, fmt.Errorf("role token key %q: %w", id, err)
		}
		pub, err := parseZTSPublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("role token key %q (%s): %w", id, files[id], err)
		}
		keys[id] = pub
	}
	return keys, nil
}

func parseZTSPublicKey(b []byte) (crypto.PublicKey, error) {
	pub, err := athenz.ParsePublicKeyPEM(b)
	if err == nil || strings.Contains(string(b), "-----BEGIN") {
		return pub, err
	}
	decoded, yerr := athenz.YDecode(strings.TrimSpace(string(b)))
	if yerr != nil {
		return nil, fmt.Errorf("neither PEM nor ybase64-encoded PEM: %w", err)
	}
	return athenz.ParsePublicKeyPEM(decoded)
}

// WithMapping returns an Authenticator like a that maps mTLS identities with m. It shares
// a's keys (and JWKS), so a new request mapping needs no new key fetch.
func (a *Authenticator) WithMapping(m *policy.Mapping) *Authenticator {
	b := *a
	b.mapping = m
	return &b
}

// JWKS returns the key set NewAuthenticator read from jwks_file or jwks_url, or nil.
func (a *Authenticator) JWKS() *JWKS { return a.jwks }

// Run keeps the JWKS fresh in the background until ctx is done (see JWKS.Run); without a
// JWKS it just waits. Optional: lookups refresh a due set too. It returns nil.
func (a *Authenticator) Run(ctx context.Context) error {
	if a.jwks != nil {
		return a.jwks.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// Authenticate returns the caller of in, or a *CredentialError (answered 401) when the
// credential found first is invalid or there is none. It never logs or returns a token.
func (a *Authenticator) Authenticate(ctx context.Context, in *Input) (Caller, error) {
	if in == nil {
		return Caller{}, credErr("", ReasonNoCredentials, nil)
	}
	var p peerInfo
	if err := a.readPeer(in, &p); err != nil {
		return Caller{}, err
	}
	for _, src := range a.order {
		var (
			c     Caller
			found bool
			err   *CredentialError
		)
		switch src {
		case SourceAccessToken:
			c, found, err = a.accessToken(ctx, in, &p)
		case SourceRoleToken:
			c, found, err = a.roleToken(in)
		case SourceRoleCert:
			c, found, err = a.roleCert(&p)
		case SourceMTLS:
			c, found, err = a.mtlsIdentity(&p)
		}
		if err != nil {
			return Caller{}, err
		}
		if found {
			return c, nil
		}
	}
	return Caller{}, credErr("", ReasonNoCredentials, nil)
}

// accessToken reads "Authorization: Bearer <jwt>". Another scheme (Basic, ...) is not a
// credential of ours and is left for the upstream.
func (a *Authenticator) accessToken(ctx context.Context, in *Input, p *peerInfo) (Caller, bool, *CredentialError) {
	h, ok := in.Headers[authorizationHeader]
	if !ok {
		return Caller{}, false, nil
	}
	h = strings.TrimLeft(h, " \t")
	scheme, tok := h, ""
	if i := strings.IndexAny(h, " \t"); i >= 0 {
		scheme, tok = h[:i], h[i+1:]
	}
	if !strings.EqualFold(scheme, "bearer") {
		return Caller{}, false, nil
	}
	if len(tok) > MaxTokenBytes+16 { // room for extra spaces around the token
		return Caller{}, true, credErr(SourceAccessToken, ReasonAccessTokenTooLarge, fmt.Errorf("%d bytes, limit %d", len(tok), MaxTokenBytes))
	}
	tok = strings.Trim(tok, " \t")
	if len(tok) > MaxTokenBytes {
		return Caller{}, true, credErr(SourceAccessToken, ReasonAccessTokenTooLarge, fmt.Errorf("%d bytes, limit %d", len(tok), MaxTokenBytes))
	}
	opts := athenz.AccessTokenOptions{
		Issuer: a.issuer, Audiences: a.audiences, Now: a.now(), Skew: a.skew,
	}
	if p.cert != nil {
		// A token with cnf must match the peer certificate whatever require_binding
		// says: a token bound to another certificate is a stolen one.
		opts.CertDER = p.cert.Raw
	}
	if a.requireBinding != nil {
		opts.RequireBinding = *a.requireBinding
	} else {
		opts.RequireBinding = p.cert != nil
	}
	keys := a.accessKeys
	if j, ok := keys.(*JWKS); ok {
		keys = jwksWithContext{j, ctx}
	}
	claims, err := athenz.VerifyAccessToken(tok, keys, opts)
	if err != nil {
		return Caller{}, true, tokenError(SourceAccessToken, err)
	}
	roles := claims.Scopes
	if len(roles) == 0 && claims.Scope != "" {
		roles = strings.Fields(claims.Scope)
		for _, r := range roles {
			if !athenz.IsEntityName(r) {
				return Caller{}, true, tokenError(SourceAccessToken, fmt.Errorf("scope: %w: %w", athenz.ErrTokenMalformed, athenz.ValidateEntityName(r)))
			}
		}
	}
	principal := claims.Subject
	if principal == "" {
		principal = claims.ClientID
	}
	return Caller{Principal: principal, TokenDomain: claims.Audience, Roles: roles, Source: SourceAccessToken}, true, nil
}

// jwksWithContext lets an unknown-kid refetch observe the request's context.
type jwksWithContext struct {
	j   *JWKS
	ctx context.Context
}

func (k jwksWithContext) Key(kid string) (crypto.PublicKey, bool) { return k.j.KeyContext(k.ctx, kid) }

// roleToken reads Athenz-Role-Auth.
func (a *Authenticator) roleToken(in *Input) (Caller, bool, *CredentialError) {
	s, ok := in.Headers[roleTokenHeader]
	if !ok {
		return Caller{}, false, nil
	}
	if len(s) > MaxTokenBytes {
		return Caller{}, true, credErr(SourceRoleToken, ReasonRoleTokenTooLarge, fmt.Errorf("%d bytes, limit %d", len(s), MaxTokenBytes))
	}
	t, err := athenz.VerifyRoleToken(strings.Trim(s, " \t"), a.roleKeyFor, a.now())
	if err != nil {
		return Caller{}, true, tokenError(SourceRoleToken, err)
	}
	return Caller{Principal: t.Principal, TokenDomain: t.Domain, Roles: t.Roles, Source: SourceRoleToken}, true, nil
}

// roleCert reads a role certificate (CN "<domain>:role.<role>" and athenz://role/ URIs),
// or, without a certificate, a role SPIFFE ID as the source principal.
func (a *Authenticator) roleCert(p *peerInfo) (Caller, bool, *CredentialError) {
	if p.cert == nil {
		if !strings.HasPrefix(p.principal, "spiffe://") || len(p.principal) > MaxPrincipalBytes {
			return Caller{}, false, nil
		}
		s, err := athenz.ParseSpiffeID(p.principal)
		if err != nil || (s.Form != athenz.SpiffeFormRole && s.Form != athenz.SpiffeFormRoleNamespace) {
			return Caller{}, false, nil
		}
		return Caller{TokenDomain: s.Domain, Roles: []string{s.Role}, Source: SourceRoleCert}, true, nil
	}
	id, err := p.identity()
	if err != nil {
		return Caller{}, true, credErr(SourceRoleCert, ReasonCertificateIdentity, err)
	}
	if !id.IsRoleCertificate() {
		return Caller{}, false, nil
	}
	domain := id.Roles[0].Domain
	roles := make([]string, len(id.Roles))
	for i, r := range id.Roles {
		if r.Domain != domain {
			return Caller{}, true, credErr(SourceRoleCert, ReasonRoleCertMixedDomains,
				fmt.Errorf("roles in %q and %q; a role certificate must stay in one domain", domain, r.Domain))
		}
		roles[i] = r.Role
	}
	return Caller{Principal: id.Principal, TokenDomain: domain, Roles: roles, Source: SourceRoleCert}, true, nil
}

// mtlsIdentity reads the peer's service identity: from the certificate when Envoy sent
// it, else from the source principal through the mapping.
func (a *Authenticator) mtlsIdentity(p *peerInfo) (Caller, bool, *CredentialError) {
	if p.cert == nil {
		if p.principal == "" {
			return Caller{}, false, nil
		}
		return a.mapPrincipal(p.principal)
	}
	id, err := p.identity()
	if err != nil {
		return Caller{}, true, credErr(SourceMTLS, ReasonCertificateIdentity, err)
	}
	if explicit := a.explicitPrincipal(id.SpiffeID); explicit != "" {
		return a.validated(explicit)
	}
	if id.Principal != "" {
		return Caller{Principal: id.Principal, Source: SourceMTLS}, true, nil
	}
	return a.mapPrincipal(id.SpiffeID)
}

// explicitPrincipal is the mapping's Principals entry for a SPIFFE ID, which wins over
// the naming rules and the certificate's CN, as it does for OPA consumers of the bundle.
func (a *Authenticator) explicitPrincipal(spiffeID string) string {
	if a.mapping == nil || spiffeID == "" {
		return ""
	}
	return a.mapping.Principals[spiffeID]
}

// mapPrincipal maps a source principal with the mapping's rules. A well-formed Istio
// identity the mapping does not name is a caller without a principal (the server denies
// it as unknown_principal: a policy gap, not a bad credential); anything else that does
// not map is an invalid credential.
func (a *Authenticator) mapPrincipal(source string) (Caller, bool, *CredentialError) {
	if len(source) > MaxPrincipalBytes {
		return Caller{}, true, credErr(SourceMTLS, ReasonInvalidPrincipal, fmt.Errorf("source principal of %d bytes, limit %d", len(source), MaxPrincipalBytes))
	}
	if p, ok := a.mapping.Principal(source); ok {
		return a.validated(p)
	}
	if s, err := athenz.ParseSpiffeID(source); err == nil && s.Form == athenz.SpiffeFormIstio {
		return Caller{Source: SourceMTLS}, true, nil
	}
	return Caller{}, true, credErr(SourceMTLS, ReasonInvalidPrincipal, fmt.Errorf("source principal %.128q is not a SPIFFE ID the mapping names", source))
}

// validated returns an mTLS caller for principal if it is a valid Athenz service name.
func (a *Authenticator) validated(principal string) (Caller, bool, *CredentialError) {
	d, s, ok := athenz.SplitPrincipal(principal)
	if !ok || !athenz.IsDomainName(d) || !athenz.IsSimpleName(s) {
		return Caller{}, true, credErr(SourceMTLS, ReasonInvalidPrincipal, fmt.Errorf("mapped principal %.128q is not <domain>.<service>", principal))
	}
	return Caller{Principal: principal, Source: SourceMTLS}, true, nil
}

// peerInfo is the request's mTLS peer, read once per request: the certificate, parsed once,
// serves token binding, role certificates and the mTLS identity.
type peerInfo struct {
	principal string
	cert      *x509.Certificate // nil: none sent (or not needed)

	idDone bool
	id     athenz.CertIdentity
	idErr  error
}

// readPeer parses the peer certificate when one was sent and a source can use it. A
// certificate that does not parse, or that the source principal does not name, is an
// error whatever credential the request carries: Envoy sends neither, so one of them was
// forged or mangled on the way.
func (a *Authenticator) readPeer(in *Input, p *peerInfo) *CredentialError {
	p.principal = in.SourcePrincipal
	if in.SourceCertificate == "" || !a.needCert {
		return nil
	}
	if len(in.SourceCertificate) > MaxCertificateBytes {
		return credErr("", ReasonCertificateTooLarge, fmt.Errorf("peer certificate of %d bytes, limit %d", len(in.SourceCertificate), MaxCertificateBytes))
	}
	cert, err := parsePeerCertificate(in.SourceCertificate)
	if err != nil {
		return credErr("", ReasonCertificateMalformed, err)
	}
	if p.principal != "" && !certNames(cert, p.principal) {
		return credErr("", ReasonPrincipalMismatch, fmt.Errorf("source principal %.128q is not a name of the peer certificate", p.principal))
	}
	p.cert = cert
	return nil
}

// identity returns the certificate's Athenz identity, computed on first use.
func (p *peerInfo) identity() (athenz.CertIdentity, error) {
	if !p.idDone {
		p.id, p.idErr = certIdentity(p.cert)
		p.idDone = true
	}
	return p.id, p.idErr
}

// certIdentity reads a peer certificate's identity. A certificate whose one SPIFFE ID is
// in Istio's form is an Istio identity: its CN, if any, is not an Athenz name and is not
// read (Istio itself ignores it); the mapping names it.
func certIdentity(cert *x509.Certificate) (athenz.CertIdentity, error) {
	id, err := athenz.PrincipalFromCertificate(cert)
	if err == nil {
		return id, nil
	}
	if s, raw, ok := istioSpiffeID(cert); ok {
		return athenz.CertIdentity{SpiffeID: raw, Spiffe: s}, nil
	}
	return athenz.CertIdentity{}, err
}

// istioSpiffeID returns the certificate's SPIFFE ID when it is its only identity URI and
// in Istio's form, and the CN does not claim a role.
func istioSpiffeID(cert *x509.Certificate) (athenz.SpiffeIdentity, string, bool) {
	if strings.IndexByte(cert.Subject.CommonName, ':') >= 0 {
		return athenz.SpiffeIdentity{}, "", false
	}
	var raw string
	for _, u := range cert.URIs {
		switch {
		case u.Scheme == "spiffe" && raw == "":
			raw = u.String()
		case u.Scheme == "spiffe", u.Scheme == "athenz" && (u.Host == "role" || u.Host == "principal"):
			return athenz.SpiffeIdentity{}, "", false
		}
	}
	if raw == "" {
		return athenz.SpiffeIdentity{}, "", false
	}
	s, err := athenz.ParseSpiffeID(raw)
	if err != nil || s.Form != athenz.SpiffeFormIstio {
		return athenz.SpiffeIdentity{}, "", false
	}
	return s, raw, true
}

// parsePeerCertificate reads attributes.source.certificate: URL-encoded PEM (Envoy
// encodes at least newlines, spaces, '+', '/' and '='), or plain PEM, of exactly one
// CERTIFICATE block. Path unescaping keeps a literal '+' a '+', as base64 needs.
func parsePeerCertificate(s string) (*x509.Certificate, error) {
	raw, err := url.PathUnescape(s)
	if err != nil {
		return nil, errors.New("peer certificate is not URL-encoded PEM")
	}
	block, rest := pem.Decode([]byte(raw))
	switch {
	case block == nil:
		return nil, errors.New("peer certificate: no PEM block")
	case block.Type != "CERTIFICATE":
		return nil, fmt.Errorf("peer certificate: PEM block %.40q, want CERTIFICATE", block.Type)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("peer certificate: more than one PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("peer certificate: %w", err)
	}
	return cert, nil
}

// certNames reports whether principal, as Envoy reports a peer, names cert: one of its
// URI SANs, or, for a certificate without URI SANs, its subject. Envoy renders the subject
// with OpenSSL's RFC 2253 printer, whose escaping differs from Go's, so the subject is
// matched by its CN.
func certNames(cert *x509.Certificate, principal string) bool {
	for _, u := range cert.URIs {
		if u.String() == principal {
			return true
		}
	}
	if len(cert.URIs) > 0 || strings.Contains(principal, "://") || cert.Subject.CommonName == "" {
		return false
	}
	for attr := range strings.SplitSeq(principal, ",") {
		if strings.TrimSpace(attr) == "CN="+cert.Subject.CommonName {
			return true
		}
	}
	return false
}
