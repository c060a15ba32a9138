package sds

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
	"github.com/athenz-mesh/athenz-mesh/attestor/ntoken"
	"github.com/athenz-mesh/athenz-mesh/attestor/ztstoken"
)

type agentProblems []string

func (p *agentProblems) addf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

func (p *agentProblems) nonNegative(name string, d time.Duration) {
	if d < 0 {
		p.addf("%s: %s is negative", name, d)
	}
}

// Validate checks the whole configuration and reports every problem at once as an
// *AgentConfigError. It reads no file and binds nothing.
func (c *AgentConfig) Validate() error {
	var p agentProblems
	c.validateIssuer(&p)
	switch c.Mode {
	case "", ModeSidecar:
		if len(c.Identities) == 0 {
			p.addf("identities: at least one identity is required in sidecar mode")
		}
	case ModeNode:
		c.validateNode(&p)
	default:
		p.addf("mode %q: want %q or %q", c.Mode, ModeSidecar, ModeNode)
	}
	if _, err := ParseValidationMode(c.SDS.Validation); err != nil {
		p.addf("sds.validation: %v", err)
	}
	c.validateCertificates(&p)
	seen := map[string]bool{}
	for i := range c.Identities {
		c.Identities[i].validate(&p, fmt.Sprintf("identities[%d]", i))
		name := strings.ToLower(athenz.Principal(c.Identities[i].Domain, c.Identities[i].Service))
		if seen[name] {
			p.addf("identities[%d]: %s is configured twice", i, name)
		}
		seen[name] = true
	}
	if c.Files.KeyMode != 0 {
		if err := CheckKeyFileMode(fs.FileMode(c.Files.KeyMode)); err != nil {
			p.addf("files.key_mode: %v", err)
		}
	}
	if c.Files.CertMode&0o111 != 0 {
		p.addf("files.cert_mode %#o: certificate files are not executable", uint32(c.Files.CertMode))
	}
	checkAddr(&p, "token_api.listen", c.TokenAPI.Listen)
	if c.TokenAPI.Listen != "" && c.TokenAPI.Listen != ListenOffValue {
		if host, _, err := net.SplitHostPort(c.TokenAPI.Listen); err == nil && !isLoopback(host) {
			p.addf("token_api.listen %q: the token API hands out credentials; listen on a loopback address", c.TokenAPI.Listen)
		}
	}
	if c.Mode == ModeNode && c.Files.Dir != "" {
		p.addf("files.dir: not available in node mode (every pod identity's key would be written there, readable by any pod that mounts the host path); workloads get their credentials over the socket")
	}
	t := c.TokenAPI
	p.nonNegative("token_api.renew_before", t.RenewBefore)
	p.nonNegative("token_api.access_token_lifetime", t.AccessTokenLifetime)
	p.nonNegative("token_api.role_token_lifetime", t.RoleTokenLifetime)
	p.nonNegative("token_api.negative_ttl", t.NegativeTTL)
	p.nonNegative("token_api.ntoken_lifetime", t.NTokenLifetime)
	if t.MaxCachedTokens < 0 {
		p.addf("token_api.max_cached_tokens %d: must not be negative", t.MaxCachedTokens)
	}
	if t.NTokenKeyVersion != "" && !athenz.IsSimpleName(t.NTokenKeyVersion) {
		p.addf("token_api.ntoken_key_version %q: want a key id such as \"0\"", t.NTokenKeyVersion)
	}
	if c.Mode == ModeNode && c.TokenAPI.Listen != "" && c.TokenAPI.Listen != ListenOffValue {
		p.addf("token_api.listen: not available in node mode (any local process could use any pod's identity over TCP)")
	}
	checkAddr(&p, "metrics.listen", c.Metrics.Listen)
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		p.addf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		p.addf("log.format %q: want json or text", c.Log.Format)
	}
	if len(p) > 0 {
		return &AgentConfigError{Kind: agentConfigKind, Problems: p}
	}
	return nil
}

func (c *AgentConfig) validateIssuer(p *agentProblems) {
	u, err := url.Parse(c.Issuer.URL)
	switch {
	case c.Issuer.URL == "":
		p.addf("issuer.url is required: the issuer's ZTS API, e.g. https://issuer:4443/zts/v1")
	case err != nil || u.Host == "":
		p.addf("issuer.url %q: not an absolute URL", c.Issuer.URL)
	case u.Scheme != "https":
		p.addf("issuer.url %q: must be https (keys and tokens travel on it)", c.Issuer.URL)
	}
	p.nonNegative("issuer.timeout", c.Issuer.Timeout)
}

func (c *AgentConfig) validateNode(p *agentProblems) {
	n := c.Node
	if n == nil {
		p.addf("node: required with mode: node (provider, mapping, kubelet)")
		return
	}
	if n.Provider != "" || n.IstioCA == nil {
		if err := athenz.ValidateServiceName(strings.ToLower(n.Provider)); err != nil {
			p.addf("node.provider: %v", err)
		}
	}
	if err := n.Mapping.Validate(); err != nil {
		p.addf("node.mapping: %v", err)
	}
	if n.Mapping.Rule == nil && len(n.Mapping.Entries) == 0 {
		p.addf("node.mapping: empty; no pod would map to an identity")
	}
	checkKeyType(p, "node.key_type", n.KeyType)
	p.nonNegative("node.validity", n.Validity)
	p.nonNegative("node.idle_grace", n.IdleGrace)
	if n.TokenPath != "" && !strings.Contains(n.TokenPath, PodUIDPlaceholder) {
		p.addf("node.token_path %q: must contain %s", n.TokenPath, PodUIDPlaceholder)
	}
	if n.Kubelet.URL != "" {
		if u, err := url.Parse(n.Kubelet.URL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			p.addf("node.kubelet.url %q: not an http(s) URL", n.Kubelet.URL)
		}
	}
	if n.IstioCA != nil {
		c.validateIstioCA(p)
	}
}

// validateIstioCA checks node.istio_ca, and that nothing configured needs what the Istio
// CA API cannot give (role certificates).
func (c *AgentConfig) validateIstioCA(p *agentProblems) {
	ic := c.Node.IstioCA
	if ic.Address == "" {
		p.addf("node.istio_ca.address is required: the issuer's Istio CA API, e.g. athenz-mesh-issuer.athenz-mesh.svc:15012")
	} else if host, port, err := net.SplitHostPort(ic.Address); err != nil || host == "" || port == "" {
		p.addf("node.istio_ca.address %q: want host:port", ic.Address)
	}
	if ic.ClusterID == "" {
		p.addf("node.istio_ca.cluster_id is required: one of the issuer's istio.clusters[].id (Istio's default is \"Kubernetes\")")
	}
	if td := ic.TrustDomain; td != "" {
		if _, err := athenz.ParseSpiffeID(IstioSpiffeID(td, "default", "default")); err != nil {
			p.addf("node.istio_ca.trust_domain %q: not a SPIFFE trust domain (lower-case DNS-like name)", td)
		}
	}
	if strings.TrimSpace(ic.Audience) != ic.Audience {
		p.addf("node.istio_ca.audience %q: leading or trailing space", ic.Audience)
	}
	for i, id := range c.Identities {
		if len(id.Roles) > 0 {
			p.addf("identities[%d].roles: role certificates are not available with node.istio_ca (the Istio CA API issues service certificates only)", i)
		}
	}
}

func (c *AgentConfig) validateCertificates(p *agentProblems) {
	cc := &c.Certificates
	for _, s := range cc.DNSSuffixes {
		if s == "none" && len(cc.DNSSuffixes) == 1 {
			continue
		}
		if !athenz.IsKubernetesName(strings.ToLower(strings.TrimPrefix(s, "."))) {
			p.addf("certificates.dns_suffixes: %q is not a DNS name", s)
		}
	}
	for _, td := range append([]string{cc.SpiffeTrustDomain}, cc.TrustDomains...) {
		if td == "" {
			continue
		}
		if _, err := athenz.ParseSpiffeID("spiffe://" + td + "/ns/default/sa/a.b"); err != nil {
			p.addf("certificates: trust domain %q: %v", td, err)
		}
	}
	if cc.RenewAfter < 0 || cc.RenewAfter > 0.95 || cc.RenewBefore < 0 || cc.RenewBefore > 0.95 {
		p.addf("certificates.renew_after/renew_before: fractions of the lifetime, between 0 and 0.95")
	} else if cc.RenewAfter != 0 && cc.RenewBefore != 0 && cc.RenewAfter > cc.RenewBefore {
		p.addf("certificates.renew_after %.2f is after renew_before %.2f", cc.RenewAfter, cc.RenewBefore)
	}
	p.nonNegative("certificates.retry_min", cc.RetryMin)
	p.nonNegative("certificates.retry_max", cc.RetryMax)
	if cc.RetryMin > 0 && cc.RetryMax > 0 && cc.RetryMax < cc.RetryMin {
		p.addf("certificates.retry_max %s is below retry_min %s", cc.RetryMax, cc.RetryMin)
	}
}

func (ic *AgentIdentityConfig) validate(p *agentProblems, at string) {
	if err := athenz.ValidateDomainName(strings.ToLower(ic.Domain)); err != nil {
		p.addf("%s.domain: %v", at, err)
	}
	if err := athenz.ValidateSimpleName(strings.ToLower(ic.Service)); err != nil {
		p.addf("%s.service: %v", at, err)
	}
	if err := athenz.ValidateServiceName(strings.ToLower(ic.Provider)); err != nil {
		p.addf("%s.provider: %v", at, err)
	}
	checkKeyType(p, at+".key_type", ic.KeyType)
	p.nonNegative(at+".validity", ic.Validity)
	p.nonNegative(at+".role_validity", ic.RoleValidity)
	if ic.InstanceID != "" {
		if _, _, err := athenz.ParseInstanceIDURI(athenz.InstanceIDURI("p.q", ic.InstanceID)); err != nil {
			p.addf("%s.instance_id: %v", at, err)
		}
	}
	for _, r := range ic.Roles {
		d, role, ok := athenz.SplitRoleName(r)
		if !ok || !athenz.IsDomainName(d) || !athenz.IsEntityName(role) {
			p.addf("%s.roles: %q is not a role name <domain>:role.<role>", at, r)
		}
	}
	if _, err := ic.Attestation.collector(); err != nil {
		p.addf("%s.attestation: %v", at, err)
	}
}

func checkKeyType(p *agentProblems, at, kt string) {
	switch KeyType(kt) {
	case "", KeyECDSAP256, KeyRSA2048:
	default:
		p.addf("%s %q: want %s or %s", at, kt, KeyECDSAP256, KeyRSA2048)
	}
}

func checkAddr(p *agentProblems, at, addr string) {
	if addr == "" || addr == ListenOffValue {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.addf("%s %q: %v", at, addr, err)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// collector builds the attestation collector. It reads no file: token files may appear
// later (the kubelet mounts them).
func (a *AgentAttestationConfig) collector() (attestor.Collector, error) {
	after := attestor.AfterUse(a.AfterUse)
	if !after.Valid() {
		return nil, fmt.Errorf("after_use %q: want keep, remove or truncate", a.AfterUse)
	}
	only := func(kind string, allowed ...string) error {
		for _, f := range []struct {
			name string
			set  bool
		}{{"token_file", a.TokenFile != ""}, {"env", a.Env != ""}, {"after_use", a.AfterUse != ""}, {"key_file", a.KeyFile != ""}, {"key_id", a.KeyID != ""}} {
			if f.set && !slices.Contains(allowed, f.name) {
				return fmt.Errorf("%s is not a parameter of kind %s", f.name, kind)
			}
		}
		return nil
	}
	switch a.Kind {
	case attestK8s:
		if err := only(a.Kind, "token_file"); err != nil {
			return nil, err
		}
		return k8s.NewCollector(k8s.CollectorConfig{TokenFile: a.TokenFile})
	case attestJoinToken, attestRegisterToken:
		if err := only(a.Kind, "token_file", "env", "after_use"); err != nil {
			return nil, err
		}
		if a.Kind == attestJoinToken {
			return jointoken.NewCollector(jointoken.CollectorConfig{File: a.TokenFile, Env: a.Env, AfterUse: after})
		}
		return ztstoken.NewCollector(ztstoken.CollectorConfig{File: a.TokenFile, Env: a.Env, AfterUse: after})
	case attestNToken:
		if err := only(a.Kind, "key_file", "key_id"); err != nil {
			return nil, err
		}
		return ntoken.NewCollector(ntoken.CollectorConfig{KeyFile: a.KeyFile, KeyID: a.KeyID})
	case "":
		return nil, fmt.Errorf("kind is required: %s, %s, %s or %s", attestK8s, attestJoinToken, attestNToken, attestRegisterToken)
	}
	return nil, fmt.Errorf("kind %q: want %s, %s, %s or %s", a.Kind, attestK8s, attestJoinToken, attestNToken, attestRegisterToken)
}

// ManagerConfig turns a validated configuration into the identity manager's.
func (c *AgentConfig) ManagerConfig() (ManagerConfig, error) {
	cc := &c.Certificates
	mc := ManagerConfig{
		DNSSuffixes: cc.DNSSuffixes, SpiffeTrustDomain: strings.ToLower(cc.SpiffeTrustDomain), TrustDomains: cc.TrustDomains,
		RenewAfter: cc.RenewAfter, RenewBefore: cc.RenewBefore, RetryMin: cc.RetryMin, RetryMax: cc.RetryMax,
		Timeout: c.Issuer.Timeout,
	}
	switch {
	case len(mc.DNSSuffixes) == 0:
		mc.DNSSuffixes = []string{DefaultAgentDNSSuffix}
	case len(mc.DNSSuffixes) == 1 && mc.DNSSuffixes[0] == "none":
		mc.DNSSuffixes = nil
	}
	if c.Node != nil {
		mc.NodeIdleGrace = c.Node.IdleGrace
	}
	for _, ic := range c.Identities {
		spec, err := ic.spec()
		if err != nil {
			return ManagerConfig{}, err
		}
		mc.Identities = append(mc.Identities, spec)
	}
	return mc, nil
}

func (ic *AgentIdentityConfig) spec() (IdentitySpec, error) {
	col, err := ic.Attestation.collector()
	if err != nil {
		return IdentitySpec{}, fmt.Errorf("identity %s.%s: %w", ic.Domain, ic.Service, err)
	}
	spec := IdentitySpec{
		Domain: strings.ToLower(ic.Domain), Service: strings.ToLower(ic.Service), Provider: strings.ToLower(ic.Provider),
		InstanceID: ic.InstanceID, Namespace: ic.Namespace, KeyType: KeyType(ic.KeyType), Collector: col,
		Validity: ic.Validity, RoleValidity: ic.RoleValidity,
	}
	if ic.Attestation.Kind == attestK8s {
		spec.InstanceFromK8sToken = true
	} else if spec.InstanceID == "" {
		if spec.InstanceID, err = os.Hostname(); err != nil {
			return IdentitySpec{}, fmt.Errorf("identity %s: no instance_id and no host name: %w", spec.Name(), err)
		}
	}
	for _, r := range ic.Roles {
		d, role, _ := athenz.SplitRoleName(r)
		spec.Roles = append(spec.Roles, RoleSpec{Domain: strings.ToLower(d), Role: strings.ToLower(role)})
	}
	return spec, nil
}

// ServerConfig returns the SDS server's configuration.
func (c *AgentConfig) ServerConfig() Config {
	mode, _ := ParseValidationMode(c.SDS.Validation)
	cfg := Config{
		SocketPath: cmpOr(c.SDS.Socket, DefaultAgentSocket), SocketMode: fs.FileMode(c.SDS.SocketMode),
		DirMode: fs.FileMode(c.SDS.DirMode), Validation: mode, DisableWorkloadAPI: c.SDS.DisableWorkloadAPI,
	}
	if c.Mode != ModeNode {
		for _, ic := range c.Identities {
			cfg.ReadyIdentities = append(cfg.ReadyIdentities, strings.ToLower(athenz.Principal(ic.Domain, ic.Service)))
		}
	}
	return cfg
}

// IdentityNames returns the configured identities' principals, in order (the first is
// what a sidecar peer gets as "default").
func (c *AgentConfig) IdentityNames() []string {
	var out []string
	for _, ic := range c.Identities {
		out = append(out, strings.ToLower(athenz.Principal(ic.Domain, ic.Service)))
	}
	return out
}

// FilesConfig returns the file writer's configuration, nil when no files are written.
func (c *AgentConfig) FilesConfig() *FilesConfig {
	if c.Files.Dir == "" {
		return nil
	}
	return &FilesConfig{Dir: c.Files.Dir, KeyMode: fs.FileMode(c.Files.KeyMode), CertMode: fs.FileMode(c.Files.CertMode)}
}

// NodeIstio returns node mode's Istio CA settings, nil without node.istio_ca. The caller
// sets CA.
func (c *AgentConfig) NodeIstio() *NodeIstio {
	if c.Node == nil || c.Node.IstioCA == nil {
		return nil
	}
	ic := c.Node.IstioCA
	return &NodeIstio{TrustDomain: strings.ToLower(ic.TrustDomain), Audience: ic.Audience}
}

// NodeTemplate returns the IdentitySpec shared by node-mode identities.
func (c *AgentConfig) NodeTemplate() IdentitySpec {
	if c.Node == nil {
		return IdentitySpec{}
	}
	provider := strings.ToLower(c.Node.Provider)
	if provider == "" && c.Node.IstioCA != nil {
		// Unused on the Istio path (the issuer's istio.provider names those
		// certificates); it only labels the identities.
		provider = defaultIstioProviderLabel
	}
	return IdentitySpec{Provider: provider, KeyType: KeyType(c.Node.KeyType), Validity: c.Node.Validity}
}
