package authz

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Config is the authz.yaml file. Every field documents what its zero value means, so the
// empty file plus a bundle source is a working configuration: gRPC on 127.0.0.1:9191,
// metrics and health on 127.0.0.1:9192, fail closed with 503, mTLS identities only.
type Config struct {
	// Listen says where the server listens.
	Listen ListenConfig `yaml:"listen"`
	// Bundle says where the signed policy bundle comes from. Exactly one of File and URL
	// must be set.
	Bundle BundleConfig `yaml:"bundle"`
	// Decision tunes the answers.
	Decision DecisionConfig `yaml:"decision"`
	// DecisionLog configures the JSON-lines decision log. Zero: no decision log.
	DecisionLog DecisionLogConfig `yaml:"decision_log"`
	// HTTP configures the HTTP ext_authz mode (Listen.HTTP).
	HTTP HTTPModeConfig `yaml:"http"`
	// Credentials says how the caller is identified.
	Credentials CredentialsConfig `yaml:"credentials"`
	// Log configures the server's own log (not the decision log).
	Log LogConfig `yaml:"log"`
}

// Listener defaults and the value that turns a listener off.
const (
	DefaultGRPCAddr    = "127.0.0.1:9191"
	DefaultMetricsAddr = "127.0.0.1:9192"
	// ListenOff, as a listen address, turns that listener off.
	ListenOff = "off"
	// DefaultSocketMode is the permission of the gRPC Unix socket file: the owner and its
	// group (Envoy's) may connect, nobody else.
	DefaultSocketMode = 0o660
	// DefaultMaxRecvBytes bounds one CheckRequest on the wire.
	DefaultMaxRecvBytes = 4 << 20
	// DefaultShutdownGrace is how long in-flight checks get to finish on shutdown.
	DefaultShutdownGrace = 10 * time.Second
)

// ListenConfig says where the server listens. At least one of GRPC, GRPCSocket and HTTP
// must be on.
type ListenConfig struct {
	// GRPC is the TCP address of the ext_authz gRPC service (and gRPC health). Empty:
	// DefaultGRPCAddr. "off": no TCP listener.
	GRPC string `yaml:"grpc"`
	// GRPCSocket is the path of a Unix socket serving the same gRPC services, for a
	// sidecar Envoy in the same pod (Envoy's pipe address). A stale socket file at that
	// path is removed first; any other kind of file there is an error. Empty: no socket.
	GRPCSocket string `yaml:"grpc_socket"`
	// GRPCSocketMode is the socket file's permission, an octal string such as "0660".
	// Empty: DefaultSocketMode (0660).
	GRPCSocketMode string `yaml:"grpc_socket_mode"`
	// HTTP is the TCP address of the HTTP ext_authz service (Envoy http_service, Istio
	// envoyExtAuthzHttp). Empty: off.
	HTTP string `yaml:"http"`
	// Metrics is the TCP address serving /metrics (Prometheus), /healthz (alive) and
	// /readyz (a bundle is loaded). Empty: DefaultMetricsAddr. "off": not served. Kubernetes
	// probes need a pod address, such as ":9192".
	Metrics string `yaml:"metrics"`
	// MaxRecvBytes bounds one gRPC CheckRequest. Zero: DefaultMaxRecvBytes (4 MiB).
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// ShutdownGrace is how long in-flight requests may take to finish when the server
	// stops. Zero: DefaultShutdownGrace (10s).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Bundle defaults.
const (
	DefaultPollInterval  = time.Second
	DefaultFetchTimeout  = 30 * time.Second
	DefaultMaxRetryDelay = 30 * time.Second
)

// BundleConfig says where the policy bundle (athenz-mesh policy compile's .tar.gz) comes
// from and how it is checked.
type BundleConfig struct {
	// File is a local bundle path, re-read when its modification time, size or inode
	// changes (checked every PollInterval; an atomic rename or a Kubernetes ConfigMap
	// update both count). Empty: use URL.
	File string `yaml:"file"`
	// URL is an http(s) URL the bundle is fetched from, polled with If-None-Match against
	// the ETag of the last bundle seen, so an unchanged bundle costs a 304. Empty: use File.
	URL string `yaml:"url"`
	// PollInterval is how often File is checked or URL polled. With the default, a new
	// bundle is enforced within about two seconds of appearing. Zero: DefaultPollInterval
	// (1s).
	PollInterval time.Duration `yaml:"poll_interval"`
	// LongPollWait, when set, asks the bundle server to hold each poll until the bundle
	// changes or this much time passes, by adding "wait=<seconds>" to the URL's query. A
	// server that does not long-poll answers at once and the client falls back to polling
	// every PollInterval. Zero: plain polling.
	LongPollWait time.Duration `yaml:"long_poll_wait"`
	// Timeout bounds one fetch (on top of LongPollWait). Zero: DefaultFetchTimeout (30s).
	Timeout time.Duration `yaml:"timeout"`
	// CAFile is a PEM file of CA certificates that the https URL's server certificate must
	// chain to. Empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// VerificationKeys are the public keys bundles may be signed with (several during a
	// key rotation). Empty: signatures are not checked, and the server logs a warning.
	VerificationKeys []VerificationKey `yaml:"verification_keys"`
	// RequireSignature refuses bundles without a signature. Nil: true when
	// VerificationKeys are given. False with keys: signed bundles are verified and
	// unsigned ones accepted (for rolling out signing). True without keys is an error.
	RequireSignature *bool `yaml:"require_signature"`
	// Scope is the signature's "scope" claim, as given to `policy compile --scope`. Empty:
	// the signature must carry no scope.
	Scope string `yaml:"scope"`
	// MaxBytes limits the bundle, compressed and uncompressed. Zero:
	// policy.DefaultMaxBundleBytes (256 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
}

// VerificationKey is one bundle verification key.
type VerificationKey struct {
	// KeyID is the key id the signature must name (policy compile --key-id). Empty:
	// policy.DefaultBundleKeyID ("default").
	KeyID string `yaml:"key_id"`
	// File is the PEM public key ("PUBLIC KEY" or "RSA PUBLIC KEY"). Required.
	File string `yaml:"file"`
}

// Failure modes (DecisionConfig.FailureMode).
const (
	FailClosed = "fail_closed"
	FailOpen   = "fail_open"
)

// Decision defaults.
const (
	DefaultStatusOnError   = 503
	DefaultPrincipalHeader = "x-athenz-principal"
	DefaultDomainHeader    = "x-athenz-domain"
	DefaultRolesHeader     = "x-athenz-roles"
	DefaultExplainHeader   = "x-athenz-explain"
	DefaultCacheSize       = 10000
	DefaultCacheMaxTTL     = 30 * time.Second
	DefaultMaxHeaderBytes  = 64 << 10
	// HeaderOff, as a header name, turns that header off.
	HeaderOff = "-"
)

// DecisionConfig tunes how decisions are answered.
type DecisionConfig struct {
	// FailureMode says what happens when no decision can be made (no bundle loaded yet,
	// an internal error): "fail_closed" answers StatusOnError, "fail_open" lets the request
	// through. Either way the answer carries "x-athenz-decision: error" and counts as an
	// error, never as a deny or an allow. Empty: fail_closed.
	FailureMode string `yaml:"failure_mode"`
	// StatusOnError is the HTTP status sent when failing closed. Zero:
	// DefaultStatusOnError (503).
	StatusOnError int `yaml:"status_on_error"`
	// EnvoyErrorResponse answers "could not decide" over gRPC with CheckResponse's
	// error_response instead of denied_response, so that Envoy counts it in ext_authz_error
	// and applies its own failure_mode_allow. Only recent Envoy versions know that field;
	// older ones answer 403 to it. False: denied_response with StatusOnError.
	EnvoyErrorResponse bool `yaml:"envoy_error_response"`
	// DryRun decides and logs every request but lets it through, marking would-be denials
	// with "x-athenz-dry-run: deny" (or "unauthenticated", "error") for the upstream.
	DryRun bool `yaml:"dry_run"`
	// Headers names the identity headers sent to the upstream on an allow.
	Headers HeadersConfig `yaml:"headers"`
	// StripToken removes the credential header the caller authenticated with
	// (Authorization for an access token, Athenz-Role-Auth for a role token) before the
	// request goes upstream. False: the upstream sees it.
	StripToken bool `yaml:"strip_token"`
	// Explain lets chosen principals ask why a request was decided as it was.
	Explain ExplainConfig `yaml:"explain"`
	// Bypass lists paths that are let through without any check. Zero: none.
	Bypass BypassConfig `yaml:"bypass"`
	// Cache tunes the decision cache.
	Cache CacheConfig `yaml:"cache"`
	// MaxHeaderBytes bounds the request headers (names plus values) a check accepts;
	// larger requests are denied with 431 and reason headers_too_large. Zero:
	// DefaultMaxHeaderBytes (64 KiB, above Envoy's own 60 KiB default).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Mapping, when set, is the request mapping (domain, action, resource, principal
	// naming) and wins over the mapping the bundle carries. Nil: the bundle's mapping, so
	// that OPA consumers of the same bundle map requests the same way.
	Mapping *MappingConfig `yaml:"mapping"`
}

// HeadersConfig names the headers an allowed request carries upstream. A name of "-"
// turns that header off. Every name is overwritten (or removed, when there is no value),
// so a client cannot send its own.
type HeadersConfig struct {
	// Principal carries the caller's Athenz principal. Empty: DefaultPrincipalHeader.
	Principal string `yaml:"principal"`
	// Domain carries the request's Athenz domain. Empty: DefaultDomainHeader.
	Domain string `yaml:"domain"`
	// Roles carries the caller's roles in that domain, comma-separated: the token's roles
	// in token mode, the roles held by membership otherwise. Empty: DefaultRolesHeader.
	Roles string `yaml:"roles"`
}

// ExplainConfig enables explanations on demand.
type ExplainConfig struct {
	// Header is the request header that asks for an explanation (any value). Empty:
	// DefaultExplainHeader.
	Header string `yaml:"header"`
	// Principals are the Athenz principals whose requests may ask. An allowed request's
	// explanation goes to the client in the "x-athenz-explanation" response header, a
	// denied one's in the JSON body. Empty: explanations are off.
	Principals []string `yaml:"principals"`
}

// BypassConfig lists requests let through without authentication or decision, such as
// health probes. A path with "..", "//", "/./", a backslash or an encoded dot, slash or
// backslash never bypasses, so a crafted path cannot reach past a bypass prefix.
type BypassConfig struct {
	// Paths are exact request paths (without the query string), such as "/healthz".
	Paths []string `yaml:"paths"`
	// PathPrefixes are path prefixes, such as "/.well-known/".
	PathPrefixes []string `yaml:"path_prefixes"`
}

// CacheConfig tunes the decision cache.
type CacheConfig struct {
	// Size is the number of decisions kept. Zero: DefaultCacheSize (10000).
	Size int `yaml:"size"`
	// MaxTTL bounds how long a decision is served from the cache; a decision is never
	// served past the earliest member expiry it depended on, whatever this says. Zero:
	// DefaultCacheMaxTTL (30s).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Disabled decides every request afresh.
	Disabled bool `yaml:"disabled"`
}

// MappingConfig is policy.Mapping in the config file; see policy.Mapping for the rules.
type MappingConfig struct {
	// DefaultDomain is the domain when neither the route's context extensions nor Hosts
	// name one. Empty: such requests are denied as invalid_request.
	DefaultDomain string `yaml:"default_domain"`
	// Hosts maps a lower-case request host, with or without ":port", to a domain.
	Hosts map[string]string `yaml:"hosts"`
	// Principals maps a SPIFFE ID exactly as Envoy reports it to an Athenz principal.
	Principals map[string]string `yaml:"principals"`
	// Namespaces maps a Kubernetes namespace to the Athenz domain of Istio identities
	// spiffe://<td>/ns/<namespace>/sa/<sa>: shorthand for an Istio entry with service
	// account "*".
	Namespaces map[string]string `yaml:"namespaces"`
	// Istio maps the namespace and service account of Istio identities to Athenz services
	// (entries, then a naming rule), the same mapping as the issuer's istio.mapping and its
	// k8s providers' mapping. Nil: only Namespaces. See athenz.IstioMapping.
	Istio *athenz.IstioMapping `yaml:"istio"`
	// AthenzTrustDomains are the SPIFFE trust domains in which
	// spiffe://<td>/ns/<ns>/sa/<domain>.<service> is the Athenz principal
	// <domain>.<service>: the athenz-mesh issuer's certificates.spiffe_trust_domain, or
	// Athenz SIA's. Never Istio's own trust domain, where anyone who may create a service
	// account could name one "sys.auth.zts". Nil: that form is not trusted.
	AthenzTrustDomains []string `yaml:"athenz_trust_domains"`
	// Routes are request rules tried in order (host, path prefix, gRPC service and
	// method); the first that matches sets the domain, action and entity it names. Nil:
	// no rules. See policy.Route.
	Routes []RouteConfig `yaml:"routes"`
}

// RouteConfig is policy.Route in the config file. Empty conditions match every request;
// empty results fall through to Hosts/DefaultDomain, the method and the path.
type RouteConfig struct {
	// Host matches the lower-case request host, with or without its port. Empty: any.
	Host string `yaml:"host"`
	// PathPrefix matches the path without its query string. Empty: any.
	PathPrefix string `yaml:"path_prefix"`
	// GRPCService matches gRPC paths /<service>/<method>. Empty: any request.
	GRPCService string `yaml:"grpc_service"`
	// GRPCMethod narrows GRPCService to one method. Empty: every method.
	GRPCMethod string `yaml:"grpc_method"`
	// Domain, Action and Resource (the entity after "<domain>:") are what the rule sets.
	// Empty: not set by this rule.
	Domain   string `yaml:"domain"`
	Action   string `yaml:"action"`
	Resource string `yaml:"resource"`
}

// Mapping returns the policy form.
func (m *MappingConfig) Mapping() *policy.Mapping {
	if m == nil {
		return nil
	}
	out := &policy.Mapping{DefaultDomain: m.DefaultDomain, Hosts: m.Hosts, Principals: m.Principals, Namespaces: m.Namespaces,
		Istio: m.Istio, AthenzTrustDomains: m.AthenzTrustDomains}
	for _, r := range m.Routes {
		out.Routes = append(out.Routes, policy.Route(r))
	}
	return out
}

// DecisionLogConfig configures the decision log: one JSON line per sampled decision, with
// the request (path without query string), the caller, the mapped request and the
// outcome. Credentials never appear: token and cookie headers are masked.
type DecisionLogConfig struct {
	// Output is "stdout", "stderr" or a file path (appended to, created mode 0600).
	// Empty: no decision log.
	Output string `yaml:"output"`
	// AllowSampleRate is the fraction of allowed requests logged, 0 to 1. Nil: 1 (all).
	AllowSampleRate *float64 `yaml:"allow_sample_rate"`
	// DenySampleRate is the fraction of denied (403 and 401) requests logged. Nil: 1.
	// Errors (could not decide) are always logged.
	DenySampleRate *float64 `yaml:"deny_sample_rate"`
	// IncludeHeaders adds the request headers, with Authorization, Athenz-Role-Auth,
	// Proxy-Authorization and Cookie values masked. False: no headers.
	IncludeHeaders bool `yaml:"include_headers"`
}

// HTTPModeConfig configures the HTTP ext_authz mode.
type HTTPModeConfig struct {
	// PathPrefix is the path_prefix (Envoy http_service) or pathPrefix (Istio) that the
	// proxy puts before the original path; it is removed before mapping. A request whose
	// path lacks it is denied as invalid_request. Empty: none.
	PathPrefix string `yaml:"path_prefix"`
	// TrustXFCC takes the caller's mTLS identity from the x-forwarded-client-cert header
	// (its last element's URI and Cert). Turn it on only when the proxy sets that header
	// itself (forward_client_cert_details SANITIZE_SET or APPEND_FORWARD) and nothing else
	// can reach this listener. False: the header is ignored.
	TrustXFCC bool `yaml:"trust_xfcc"`
}

// LogConfig configures the server log.
type LogConfig struct {
	// Level is debug, info, warn or error. Empty: info.
	Level string `yaml:"level"`
	// Format is json or text. Empty: json.
	Format string `yaml:"format"`
}

// Credential sources (CredentialsConfig.Order).
const (
	SourceAccessToken = "access_token"
	SourceRoleToken   = "role_token"
	SourceRoleCert    = "role_cert"
	SourceMTLS        = "mtls"
)

// DefaultCredentialOrder is the order credential sources are tried in when
// CredentialsConfig.Order is empty: explicit tokens first, then the peer certificate as a
// role certificate, then as a service identity.
var DefaultCredentialOrder = []string{SourceAccessToken, SourceRoleToken, SourceRoleCert, SourceMTLS}

// DefaultTokenSkew is the clock skew allowed on token times when AccessTokenConfig.Skew
// is zero.
const DefaultTokenSkew = 60 * time.Second

// CredentialsConfig says how the Authenticator learns who is calling. It is read by
// NewAuthenticator (credentials.go).
type CredentialsConfig struct {
	// Order lists the credential sources tried, by name: access_token, role_token,
	// role_cert, mtls. A source not listed is never used. Empty: DefaultCredentialOrder.
	Order []string `yaml:"order"`
	// AccessToken verifies "Authorization: Bearer" JWT access tokens. Zero: off (an
	// access token needs JWKSFile or JWKSURL).
	AccessToken AccessTokenConfig `yaml:"access_token"`
	// RoleToken verifies Athenz-Role-Auth role tokens. Zero: off (a role token needs
	// PublicKeys).
	RoleToken RoleTokenConfig `yaml:"role_token"`
	// MTLS takes the caller from the peer certificate (source principal or certificate).
	MTLS MTLSConfig `yaml:"mtls"`
}

// AccessTokenConfig verifies access tokens.
type AccessTokenConfig struct {
	// JWKSFile is a JWKS document with the signing keys. Empty: use JWKSURL.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is where the JWKS is fetched from, such as the issuer's
	// https://<issuer>/zts/v1/oauth2/keys. Empty: use JWKSFile; neither: access tokens off.
	JWKSURL string `yaml:"jwks_url"`
	// CAFile is a PEM file of CA certificates that an https JWKSURL's server certificate
	// must chain to. Empty: bundle.ca_file when that is set (the issuer usually serves
	// both), else the system roots.
	CAFile string `yaml:"ca_file"`
	// Issuer is the "iss" a token must carry. Empty: not checked.
	Issuer string `yaml:"issuer"`
	// Audiences are the "aud" values (token domains) accepted. Empty: any.
	Audiences []string `yaml:"audiences"`
	// Skew is the clock skew allowed on exp, nbf and iat. Zero: DefaultTokenSkew (60s).
	Skew time.Duration `yaml:"skew"`
	// RequireBinding requires the token's cnf "x5t#S256" to match the peer certificate.
	// Nil: required whenever a peer certificate is available (as athenz-authorizer does).
	// False: not checked.
	RequireBinding *bool `yaml:"require_binding"`
}

// Enabled reports whether access tokens are verified.
func (c AccessTokenConfig) Enabled() bool { return c.JWKSFile != "" || c.JWKSURL != "" }

// SkewOrDefault returns Skew, or DefaultTokenSkew when it is zero.
func (c AccessTokenConfig) SkewOrDefault() time.Duration {
	if c.Skew == 0 {
		return DefaultTokenSkew
	}
	return c.Skew
}

// RoleTokenConfig verifies role tokens.
type RoleTokenConfig struct {
	// PublicKeys maps a ZTS key id (the token's "k") to a PEM public key file. Empty:
	// role tokens off.
	PublicKeys map[string]string `yaml:"public_keys"`
}

// Enabled reports whether role tokens are verified.
func (c RoleTokenConfig) Enabled() bool { return len(c.PublicKeys) > 0 }

// MTLSConfig takes the caller from the peer certificate.
type MTLSConfig struct {
	// Enabled turns the mtls and role_cert sources on. Nil: true.
	Enabled *bool `yaml:"enabled"`
}

// IsEnabled reports whether the peer certificate identifies callers.
func (c MTLSConfig) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// OrderOrDefault returns Order, or DefaultCredentialOrder when it is empty.
func (c CredentialsConfig) OrderOrDefault() []string {
	if len(c.Order) == 0 {
		return DefaultCredentialOrder
	}
	return c.Order
}

// ConfigError lists every problem found in a configuration.
type ConfigError = yamlconfig.Error

// configKind names authz's configuration in errors.
const configKind = "authz"

// LoadConfig reads and strictly decodes the file at path (see DecodeConfig). It does not
// validate: callers apply flag overrides first, then call Validate.
func LoadConfig(path string) (Config, error) { return yamlconfig.LoadFile[Config](path, configKind) }

// DecodeConfig decodes one YAML document strictly: unknown keys, values of the wrong type
// and a second document are errors naming their line. An empty document is the zero
// Config.
func DecodeConfig(r io.Reader) (Config, error) { return yamlconfig.DecodeReader[Config](r, configKind) }

// Validate checks the whole configuration and reports every problem at once as a
// *ConfigError. It does not read files or bind addresses: New does.
func (c *Config) Validate() error {
	var p problems
	c.Listen.validate(&p)
	c.Bundle.validate(&p)
	c.Decision.validate(&p)
	c.DecisionLog.validate(&p)
	c.HTTP.validate(&p)
	c.Credentials.validate(&p)
	c.Log.validate(&p)
	if len(p) > 0 {
		return &ConfigError{Kind: configKind, Problems: p}
	}
	return nil
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (l *ListenConfig) validate(p *problems) {
	grpcOn := l.GRPC != ListenOff
	checkAddr := func(field, addr string) {
		if addr == "" || addr == ListenOff {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			p.addf("listen.%s: %q is not host:port (%v)", field, addr, err)
		}
	}
	checkAddr("grpc", l.GRPC)
	checkAddr("http", l.HTTP)
	checkAddr("metrics", l.Metrics)
	if !grpcOn && l.GRPCSocket == "" && l.HTTP == "" {
		p.addf("listen: grpc is off and neither grpc_socket nor http is set: nothing would serve checks")
	}
	if l.GRPCSocketMode != "" {
		if _, err := parseSocketMode(l.GRPCSocketMode); err != nil {
			p.addf("listen.grpc_socket_mode: %v", err)
		}
	}
	if l.MaxRecvBytes < 0 {
		p.addf("listen.max_recv_bytes: %d is negative", l.MaxRecvBytes)
	}
	if l.ShutdownGrace < 0 {
		p.addf("listen.shutdown_grace: %s is negative", l.ShutdownGrace)
	}
}

// parseSocketMode parses an octal permission such as "0660".
func parseSocketMode(s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal permission such as \"0660\"", s)
	}
	return os.FileMode(v), nil
}

func (b *BundleConfig) validate(p *problems) {
	switch {
	case b.File == "" && b.URL == "":
		p.addf("bundle: set file or url: where the policy bundle comes from")
	case b.File != "" && b.URL != "":
		p.addf("bundle: set file or url, not both")
	}
	if b.URL != "" {
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("bundle.url: %q is not an http(s) URL", b.URL)
		}
	}
	if b.File != "" && (b.LongPollWait != 0 || b.CAFile != "") {
		p.addf("bundle: long_poll_wait and ca_file apply to url, not file")
	}
	if b.PollInterval < 0 {
		p.addf("bundle.poll_interval: %s is negative", b.PollInterval)
	}
	if b.LongPollWait < 0 {
		p.addf("bundle.long_poll_wait: %s is negative", b.LongPollWait)
	}
	if b.Timeout < 0 {
		p.addf("bundle.timeout: %s is negative", b.Timeout)
	}
	if b.MaxBytes < 0 {
		p.addf("bundle.max_bytes: %d is negative", b.MaxBytes)
	}
	seen := map[string]bool{}
	for i, k := range b.VerificationKeys {
		if k.File == "" {
			p.addf("bundle.verification_keys[%d].file: required", i)
		}
		id := k.keyID()
		if seen[id] {
			p.addf("bundle.verification_keys[%d].key_id: %q appears twice", i, id)
		}
		seen[id] = true
	}
	if b.RequireSignature != nil && *b.RequireSignature && len(b.VerificationKeys) == 0 {
		p.addf("bundle.require_signature: true needs verification_keys to check signatures with")
	}
}

func (k VerificationKey) keyID() string {
	if k.KeyID == "" {
		return policy.DefaultBundleKeyID
	}
	return k.KeyID
}

// requireSignature resolves RequireSignature's default.
func (b *BundleConfig) requireSignature() bool {
	if b.RequireSignature == nil {
		return len(b.VerificationKeys) > 0
	}
	return *b.RequireSignature
}

func (d *DecisionConfig) validate(p *problems) {
	switch d.FailureMode {
	case "", FailClosed, FailOpen:
	default:
		p.addf("decision.failure_mode: %q, want fail_closed or fail_open", d.FailureMode)
	}
	if d.StatusOnError != 0 && (d.StatusOnError < 400 || d.StatusOnError > 599) {
		p.addf("decision.status_on_error: %d, want a 4xx or 5xx status", d.StatusOnError)
	}
	for _, h := range []struct{ field, name string }{
		{"headers.principal", d.Headers.Principal},
		{"headers.domain", d.Headers.Domain},
		{"headers.roles", d.Headers.Roles},
		{"explain.header", d.Explain.Header},
	} {
		if h.name != "" && h.name != HeaderOff && !validHeaderName(h.name) {
			p.addf("decision.%s: %q is not a lower-case HTTP header name", h.field, h.name)
		}
	}
	for i, pr := range d.Explain.Principals {
		if pr == "" || strings.ToLower(pr) != pr {
			p.addf("decision.explain.principals[%d]: %q, want a lower-case Athenz principal", i, pr)
		}
	}
	for i, path := range d.Bypass.Paths {
		if !strings.HasPrefix(path, "/") || strings.Contains(path, "?") {
			p.addf("decision.bypass.paths[%d]: %q, want a path starting with / and no query", i, path)
		}
	}
	for i, path := range d.Bypass.PathPrefixes {
		if !strings.HasPrefix(path, "/") || strings.Contains(path, "?") {
			p.addf("decision.bypass.path_prefixes[%d]: %q, want a path starting with / and no query", i, path)
		} else if path == "/" {
			p.addf("decision.bypass.path_prefixes[%d]: \"/\" would bypass every request; use dry_run or remove ext_authz", i)
		}
	}
	if d.Cache.Size < 0 {
		p.addf("decision.cache.size: %d is negative", d.Cache.Size)
	}
	if d.Cache.MaxTTL < 0 {
		p.addf("decision.cache.max_ttl: %s is negative", d.Cache.MaxTTL)
	}
	if d.MaxHeaderBytes < 0 {
		p.addf("decision.max_header_bytes: %d is negative", d.MaxHeaderBytes)
	}
	if d.Mapping != nil {
		if err := d.Mapping.Mapping().Validate(); err != nil {
			p.addf("decision.%v", err)
		}
	}
}

// validHeaderName reports whether name is a lower-case RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", c):
		default:
			return false
		}
	}
	return true
}

func (d *DecisionLogConfig) validate(p *problems) {
	for _, s := range []struct {
		field string
		rate  *float64
	}{{"allow_sample_rate", d.AllowSampleRate}, {"deny_sample_rate", d.DenySampleRate}} {
		if s.rate != nil && (math.IsNaN(*s.rate) || *s.rate < 0 || *s.rate > 1) {
			p.addf("decision_log.%s: %v, want a number from 0 to 1", s.field, *s.rate)
		}
	}
	if d.Output == "" && (d.AllowSampleRate != nil || d.DenySampleRate != nil || d.IncludeHeaders) {
		p.addf("decision_log: sampling or include_headers set but output is empty, so nothing is logged")
	}
}

func (h *HTTPModeConfig) validate(p *problems) {
	if h.PathPrefix != "" && (!strings.HasPrefix(h.PathPrefix, "/") || strings.HasSuffix(h.PathPrefix, "/")) {
		p.addf("http.path_prefix: %q, want a path starting with / and not ending with /, such as \"/authz\"", h.PathPrefix)
	}
}

func (c *CredentialsConfig) validate(p *problems) {
	seen := map[string]bool{}
	for i, s := range c.Order {
		switch s {
		case SourceAccessToken, SourceRoleToken, SourceRoleCert, SourceMTLS:
		default:
			p.addf("credentials.order[%d]: %q, want access_token, role_token, role_cert or mtls", i, s)
		}
		if seen[s] {
			p.addf("credentials.order[%d]: %q appears twice", i, s)
		}
		seen[s] = true
	}
	at := c.AccessToken
	if at.JWKSFile != "" && at.JWKSURL != "" {
		p.addf("credentials.access_token: set jwks_file or jwks_url, not both")
	}
	if at.JWKSURL != "" {
		if u, err := url.Parse(at.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("credentials.access_token.jwks_url: %q is not an http(s) URL", at.JWKSURL)
		}
	}
	if !at.Enabled() && (at.Issuer != "" || len(at.Audiences) > 0 || at.Skew != 0 || at.RequireBinding != nil) {
		p.addf("credentials.access_token: settings given but neither jwks_file nor jwks_url, so access tokens are off")
	}
	if at.Skew < 0 {
		p.addf("credentials.access_token.skew: %s is negative", at.Skew)
	}
	for _, id := range sortedKeys(c.RoleToken.PublicKeys) {
		if id == "" || c.RoleToken.PublicKeys[id] == "" {
			p.addf("credentials.role_token.public_keys: key id %q: want a key id and a PEM file", id)
		}
	}
}

func (l *LogConfig) validate(p *problems) {
	if _, err := parseLevel(l.Level); err != nil {
		p.addf("log.level: %v", err)
	}
	switch l.Format {
	case "", "json", "text":
	default:
		p.addf("log.format: %q, want json or text", l.Format)
	}
}

// sortedKeys returns m's keys in order, for deterministic messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
