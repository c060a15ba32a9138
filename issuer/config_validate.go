package issuer

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

// K8sConfig configures a "k8s" provider: Kubernetes projected service account tokens,
// verified offline against the cluster's keys or through the TokenReview API. Exactly one
// of Offline and TokenReview.
type K8sConfig struct {
	// Audiences are the accepted token audiences, e.g. ["athenz-mesh"]. Required.
	Audiences []string `yaml:"audiences"`
	// Mapping maps namespace and service account to the Athenz service (explicit entries
	// and a naming rule). Empty: nothing maps, every token is refused.
	Mapping k8s.Mapping `yaml:"mapping"`
	// InstanceID is "pod-uid" or "pod-name". Empty: pod-uid.
	InstanceID string `yaml:"instance_id"`
	// Skew is the clock skew allowed offline. Zero: 60s.
	Skew time.Duration `yaml:"skew"`
	// Offline verifies against the cluster's signing keys.
	Offline *K8sOfflineConfig `yaml:"offline"`
	// TokenReview asks the API server about each token.
	TokenReview *K8sTokenReviewConfig `yaml:"token_review"`
}

// K8sOfflineConfig is k8s.OfflineConfig in YAML.
type K8sOfflineConfig struct {
	// Issuer is the cluster's service account issuer. Required.
	Issuer string `yaml:"issuer"`
	// JWKSFile is a JWKS file; JWKSURL a JWKS URL; both empty: OIDC discovery at Issuer.
	JWKSFile string `yaml:"jwks_file"`
	JWKSURL  string `yaml:"jwks_url"`
	// BearerTokenFile is sent as a bearer token with JWKS requests. Empty: none.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// CAFile is trusted for JWKS requests. Empty: system roots.
	CAFile string `yaml:"ca_file"`
}

// K8sTokenReviewConfig is k8s.TokenReviewConfig in YAML.
type K8sTokenReviewConfig struct {
	// Server is the API server URL. Empty: in-cluster.
	Server string `yaml:"server"`
	// CAFile is trusted for Server. Empty: in-cluster CA (or system roots with Server).
	CAFile string `yaml:"ca_file"`
	// TokenFile is the issuer's own token. Empty: the in-cluster token.
	TokenFile string `yaml:"token_file"`
}

// verifierConfig converts to the attestor's configuration.
func (k *K8sConfig) verifierConfig(maxValidity time.Duration) k8s.Config {
	c := k8s.Config{
		Audiences:   k.Audiences,
		Mapping:     k.Mapping,
		InstanceID:  k8s.InstanceIDSource(k.InstanceID),
		Skew:        k.Skew,
		MaxValidity: maxValidity,
	}
	if o := k.Offline; o != nil {
		c.Offline = &k8s.OfflineConfig{Issuer: o.Issuer, File: o.JWKSFile, URL: o.JWKSURL, BearerTokenFile: o.BearerTokenFile, CAFile: o.CAFile}
	}
	if t := k.TokenReview; t != nil {
		c.TokenReview = &k8s.TokenReviewConfig{Server: t.Server, CAFile: t.CAFile, TokenFile: t.TokenFile}
	}
	return c
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p *problems) nonNegative(name string, d time.Duration) {
	if d < 0 {
		p.addf("%s: %s is negative", name, d)
	}
}

// Validate checks the whole configuration and reports every problem at once as a
// *ConfigError. It reads no files and binds nothing: New does.
func (c *Config) Validate() error {
	var p problems
	if c.Domains.Dir == "" {
		p.addf("domains.dir is required: the directory of Athenz domain files")
	}
	p.nonNegative("domains.poll_interval", c.Domains.PollInterval)
	if c.Listen.Address != "" {
		if _, _, err := net.SplitHostPort(c.Listen.Address); err != nil {
			p.addf("listen.address %q: %v", c.Listen.Address, err)
		}
	}
	if m := c.Listen.Metrics; m != "" && m != ListenOff {
		if _, _, err := net.SplitHostPort(m); err != nil {
			p.addf("listen.metrics %q: %v (or %q)", m, err, ListenOff)
		}
	}
	if c.Listen.MaxBodyBytes < 0 {
		p.addf("listen.max_body_bytes: %d is negative", c.Listen.MaxBodyBytes)
	}
	p.nonNegative("listen.shutdown_grace", c.Listen.ShutdownGrace)
	p.nonNegative("listen.max_long_poll", c.Listen.MaxLongPoll)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.addf("tls.cert_file and tls.key_file go together")
	}
	if (c.CA.KeyFile == "") != (c.CA.CertFile == "") {
		p.addf("ca.key_file and ca.cert_file go together")
	}
	if c.CA.KeyFile != "" && (c.CA.Dir != "" || c.CA.Create) {
		p.addf("ca: give either dir (optionally with create) or key_file and cert_file, not both")
	}
	if c.CA.KeyFile == "" && (c.CA.ChainFile != "" || c.CA.RootsFile != "") {
		p.addf("ca.chain_file and ca.roots_file need ca.key_file and ca.cert_file")
	}
	p.nonNegative("store.certificate_retention", c.Store.CertificateRetention)
	p.nonNegative("store.revocation_retention", c.Store.RevocationRetention)
	p.nonNegative("store.prune_interval", c.Store.PruneInterval)
	if c.Store.MaxConns < 0 {
		p.addf("store.max_conns: %d is negative", c.Store.MaxConns)
	}
	for name, k := range map[string]KeyConfig{"zts": c.Keys.ZTS, "zms": c.Keys.ZMS, "bundle": c.Keys.Bundle} {
		if k.ID != "" && !isKeyID(k.ID) {
			p.addf("keys.%s.id %q: want 1 to 128 of [A-Za-z0-9._-]", name, k.ID)
		}
	}
	c.Certificates.validate(&p)
	c.Tokens.validate(&p)
	p.nonNegative("zts_provider.max_validity", c.ZTSProvider.MaxValidity)
	p.nonNegative("zts_provider.register_token_max_age", c.ZTSProvider.RegisterTokenMaxAge)
	seen := map[string]bool{}
	for i, pc := range c.Providers {
		pc.validate(&p, i, seen)
	}
	c.Istio.validate(&p, seen)
	p = append(p, yamlconfig.CheckLog(c.Log.Level, c.Log.Format)...)
	if len(p) > 0 {
		return &ConfigError{Kind: configKind, Problems: p}
	}
	return nil
}

func (c *CertificatesConfig) validate(p *problems) {
	for _, s := range c.DNSSuffixes {
		if !isDNSName(strings.TrimPrefix(s, ".")) {
			p.addf("certificates.dns_suffixes: %q is not a DNS name", s)
		}
	}
	if td := c.SpiffeTrustDomain; td != "" {
		if _, err := athenz.ParseSpiffeID("spiffe://" + td + "/ns/default/sa/a.b"); err != nil {
			p.addf("certificates.spiffe_trust_domain %q: not a SPIFFE trust domain (lower-case DNS-like name)", td)
		}
	}
	p.nonNegative("certificates.default_validity", c.DefaultValidity)
	p.nonNegative("certificates.max_validity", c.MaxValidity)
	if c.DefaultValidity > 0 && c.MaxValidity > 0 && c.DefaultValidity > c.MaxValidity {
		p.addf("certificates.default_validity %s is longer than max_validity %s", c.DefaultValidity, c.MaxValidity)
	}
}

func (t *TokensConfig) validate(p *problems) {
	if t.Issuer != "" {
		u, err := url.Parse(t.Issuer)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.addf("tokens.issuer %q: want an absolute http(s) URL such as https://zts.example.com:4443/zts/v1", t.Issuer)
		}
	}
	if t.Host != "" && !isDNSName(t.Host) && net.ParseIP(t.Host) == nil {
		p.addf("tokens.host %q: want a host name", t.Host)
	}
	p.nonNegative("tokens.access_token_lifetime", t.AccessTokenLifetime)
	p.nonNegative("tokens.role_token_lifetime", t.RoleTokenLifetime)
	p.nonNegative("tokens.max_lifetime", t.MaxLifetime)
	p.nonNegative("tokens.policy_expiry", t.PolicyExpiry)
	if t.NTokenHeader != "" && strings.ContainsAny(t.NTokenHeader, " :\t\r\n") {
		p.addf("tokens.ntoken_header %q: not a header name", t.NTokenHeader)
	}
}

func (pc *ProviderConfig) validate(p *problems, i int, seen map[string]bool) {
	name := strings.ToLower(pc.Name)
	where := fmt.Sprintf("providers[%d]", i)
	switch {
	case name == "":
		p.addf("%s.name is required", where)
	case !athenz.IsServiceName(name) || !strings.Contains(name, "."):
		p.addf("%s.name %q: want a provider service name <domain>.<service>", where, pc.Name)
	case name == ZTSProviderName:
		p.addf("%s.name: %s is built in (see zts_provider)", where, ZTSProviderName)
	case seen[name]:
		p.addf("%s.name %q is configured twice", where, pc.Name)
	}
	seen[name] = true
	p.nonNegative(where+".max_validity", pc.MaxValidity)
	switch pc.Attestor {
	case AttestorJoinToken:
		if pc.K8s != nil {
			p.addf("%s.k8s is only for attestor %q", where, AttestorK8s)
		}
	case AttestorK8s:
		if pc.K8s == nil {
			p.addf("%s.k8s is required for attestor %q", where, AttestorK8s)
		} else if (pc.K8s.Offline == nil) == (pc.K8s.TokenReview == nil) {
			p.addf("%s.k8s: configure exactly one of offline and token_review", where)
		}
	default:
		p.addf("%s.attestor %q: want %q or %q", where, pc.Attestor, AttestorJoinToken, AttestorK8s)
	}
}

// isKeyID reports whether s fits the key id field of Athenz tokens.
func isKeyID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is a syntactically valid DNS name.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// withDefaults returns c with every zero field replaced by its documented default.
// Validate must have passed.
func (c Config) withDefaults() Config {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Listen.Address, DefaultListenAddr)
	def(&c.Listen.Metrics, DefaultMetricsAddr)
	if c.Listen.MaxBodyBytes == 0 {
		c.Listen.MaxBodyBytes = DefaultMaxBodyBytes
	}
	defDur(&c.Listen.ShutdownGrace, DefaultShutdownGrace)
	defDur(&c.Listen.MaxLongPoll, DefaultMaxLongPoll)
	def(&c.DataDir, DefaultDataDir)
	defDur(&c.Domains.PollInterval, DefaultDomainsPoll)
	defDur(&c.Store.PruneInterval, DefaultPruneInterval)
	if c.CA.KeyFile == "" {
		def(&c.CA.Dir, filepath.Join(c.DataDir, "ca"))
	}
	def(&c.Keys.ZTS.File, filepath.Join(c.DataDir, "zts.key.pem"))
	def(&c.Keys.ZTS.ID, DefaultKeyID)
	def(&c.Keys.ZMS.File, filepath.Join(c.DataDir, "zms.key.pem"))
	def(&c.Keys.ZMS.ID, DefaultKeyID)
	def(&c.Keys.Bundle.File, filepath.Join(c.DataDir, "bundle.key.pem"))
	def(&c.Keys.Bundle.ID, DefaultBundleKeyID)
	if len(c.Certificates.DNSSuffixes) == 0 {
		c.Certificates.DNSSuffixes = []string{DefaultDNSSuffix}
	}
	for i, s := range c.Certificates.DNSSuffixes {
		c.Certificates.DNSSuffixes[i] = strings.ToLower(strings.TrimPrefix(s, "."))
	}
	defDur(&c.Certificates.DefaultValidity, DefaultCertValidity)
	defDur(&c.Certificates.MaxValidity, DefaultMaxCertValidity)
	c.Certificates.DefaultValidity = min(c.Certificates.DefaultValidity, c.Certificates.MaxValidity)
	if c.Tokens.Issuer == "" {
		c.Tokens.Issuer = defaultIssuerURL(c.Listen.Address)
	}
	c.Tokens.Issuer = strings.TrimSuffix(c.Tokens.Issuer, "/")
	if c.Tokens.Host == "" {
		if u, err := url.Parse(c.Tokens.Issuer); err == nil {
			c.Tokens.Host = u.Hostname()
		}
	}
	defDur(&c.Tokens.AccessTokenLifetime, DefaultAccessTokenLifetime)
	defDur(&c.Tokens.RoleTokenLifetime, DefaultRoleTokenLifetime)
	defDur(&c.Tokens.MaxLifetime, DefaultMaxTokenLifetime)
	defDur(&c.Tokens.PolicyExpiry, DefaultPolicyExpiry)
	def(&c.Tokens.NTokenHeader, DefaultNTokenHeader)
	if len(c.TLS.Hostnames) == 0 {
		c.TLS.Hostnames = []string{"localhost", "127.0.0.1", "::1"}
		if h := c.Tokens.Host; h != "" && h != "localhost" && h != "127.0.0.1" {
			c.TLS.Hostnames = append(c.TLS.Hostnames, h)
		}
	}
	for i := range c.Providers {
		c.Providers[i].Name = strings.ToLower(c.Providers[i].Name)
	}
	c.Istio = c.Istio.withDefaults()
	return c
}

// defaultIssuerURL derives https://<host>:<port>/zts/v1 from the listen address.
func defaultIssuerURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "https://localhost/zts/v1"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		host = "localhost"
	}
	if port == "443" {
		return "https://" + host + "/zts/v1"
	}
	return "https://" + net.JoinHostPort(host, port) + "/zts/v1"
}
