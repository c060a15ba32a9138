package issuer

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

// Defaults of the Istio CA API.
const (
	// DefaultIstioTrustDomain is Istio's default trust domain (mesh config trustDomain).
	DefaultIstioTrustDomain = "cluster.local"
	// DefaultIstioAudience is the audience of the token istio-agent sends to its CA.
	DefaultIstioAudience = "istio-ca"
	// DefaultIstioProvider is the provider name of Istio CA API certificates: the principal
	// launch authorization checks and the provider of the certificate records.
	DefaultIstioProvider = "athenz-mesh.istio"
)

// IstioConfig configures Istio's CA API, istio.v1.auth.IstioCertificateService/
// CreateCertificate, which istio-agent calls when CA_ADDR points at it. It is served over
// gRPC with TLS (the issuer's server certificate, tls.*) on its own address, with gRPC
// health. Each caller authenticates with its pod's service-account token for one of the
// configured clusters; the CSR must ask for exactly that pod's Istio SPIFFE ID, and the
// certificate carries it plus, in the subject CN, the Athenz principal the mapping gives.
type IstioConfig struct {
	// Listen is the gRPC address, e.g. "0.0.0.0:15012". Empty: the Istio CA API is off and
	// every other field is ignored (but still validated).
	Listen string `yaml:"listen"`
	// TrustDomain is the mesh's trust domain: the CSR must ask for
	// spiffe://<TrustDomain>/ns/<namespace>/sa/<service account>. Empty:
	// DefaultIstioTrustDomain ("cluster.local").
	TrustDomain string `yaml:"trust_domain"`
	// Audiences are the token audiences accepted. Empty: ["istio-ca"] (istio-agent's).
	Audiences []string `yaml:"audiences"`
	// Provider names these certificates in launch authorization (the tenant domain must let
	// it "launch" "<domain>:service.<service>", as for every provider) and in the records.
	// Empty: DefaultIstioProvider ("athenz-mesh.istio").
	Provider string `yaml:"provider"`
	// MaxValidity caps the lifetime istio-agent asks for (its SECRET_TTL, 24h by default);
	// certificates.max_validity and the domain's serviceCertExpiryMins cap it too. Zero:
	// only those caps. A request without a lifetime gets certificates.default_validity.
	MaxValidity time.Duration `yaml:"max_validity"`
	// Mapping maps namespace and service account to the Athenz service in the CN (entries
	// and a naming rule, the same shape as a k8s provider's mapping and authz's
	// decision.mapping.istio). Empty: nothing maps, every request is refused.
	Mapping athenz.IstioMapping `yaml:"mapping"`
	// Clusters are the Kubernetes clusters whose workloads may call, each named by the
	// ClusterID istio-agent sends (its CLUSTER_ID). Required when Listen is set.
	Clusters []IstioClusterConfig `yaml:"clusters"`
}

// IstioClusterConfig is one cluster allowed to call the Istio CA API, with how its
// service-account tokens are verified: exactly one of Offline and TokenReview, as for a
// k8s provider.
type IstioClusterConfig struct {
	// ID is the ClusterID metadata istio-agent sends (Istio's default is "Kubernetes").
	// Required, unique.
	ID string `yaml:"id"`
	// Skew is the clock skew allowed offline. Zero: 60s.
	Skew time.Duration `yaml:"skew"`
	// Offline verifies tokens against the cluster's signing keys (JWKS file, URL or OIDC
	// discovery).
	Offline *K8sOfflineConfig `yaml:"offline"`
	// TokenReview asks the cluster's API server about each token.
	TokenReview *K8sTokenReviewConfig `yaml:"token_review"`
}

// enabled reports whether the Istio CA API is served.
func (c *IstioConfig) enabled() bool { return c.Listen != "" }

// validate adds the problems of the istio section; seen holds the provider names.
func (c *IstioConfig) validate(p *problems, seen map[string]bool) {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			p.addf("istio.listen %q: %v", c.Listen, err)
		}
		if len(c.Clusters) == 0 {
			p.addf("istio.clusters: at least one cluster is required when istio.listen is set")
		}
	}
	if td := c.TrustDomain; td != "" {
		if _, err := athenz.ParseSpiffeID("spiffe://" + td + "/ns/default/sa/default"); err != nil {
			p.addf("istio.trust_domain %q: not a SPIFFE trust domain (lower-case DNS-like name)", td)
		}
	}
	for _, a := range c.Audiences {
		if a == "" {
			p.addf("istio.audiences: empty audience")
		}
	}
	if name := strings.ToLower(c.Provider); name != "" {
		switch {
		case !athenz.IsServiceName(name) || !strings.Contains(name, "."):
			p.addf("istio.provider %q: want a provider service name <domain>.<service>", c.Provider)
		case name == ZTSProviderName || seen[name]:
			p.addf("istio.provider %q is also a provider of providers or zts_provider; give it its own name", c.Provider)
		}
	}
	p.nonNegative("istio.max_validity", c.MaxValidity)
	if err := c.Mapping.Validate(); err != nil {
		p.addf("istio.mapping: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	ids := map[string]bool{}
	for i, cl := range c.Clusters {
		where := "istio.clusters[" + strconv.Itoa(i) + "]"
		switch {
		case cl.ID == "":
			p.addf("%s.id is required (the ClusterID istio-agent sends, \"Kubernetes\" by default)", where)
		case ids[cl.ID]:
			p.addf("%s.id %q is configured twice", where, cl.ID)
		}
		ids[cl.ID] = true
		p.nonNegative(where+".skew", cl.Skew)
		if (cl.Offline == nil) == (cl.TokenReview == nil) {
			p.addf("%s: configure exactly one of offline and token_review", where)
		}
	}
}

// withDefaults fills the documented defaults.
func (c IstioConfig) withDefaults() IstioConfig {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultIstioTrustDomain
	}
	c.TrustDomain = strings.ToLower(c.TrustDomain)
	if len(c.Audiences) == 0 {
		c.Audiences = []string{DefaultIstioAudience}
	}
	if c.Provider == "" {
		c.Provider = DefaultIstioProvider
	}
	c.Provider = strings.ToLower(c.Provider)
	return c
}

// verifierConfig is the Kubernetes attestor's configuration for one cluster: the Istio
// audiences and mapping with the cluster's way of verifying tokens.
func (c *IstioConfig) verifierConfig(cl IstioClusterConfig) k8s.Config {
	kc := K8sConfig{Audiences: c.Audiences, Mapping: c.Mapping, Skew: cl.Skew, Offline: cl.Offline, TokenReview: cl.TokenReview}
	return kc.verifierConfig(c.MaxValidity)
}
