package sds

import (
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

// AgentConfig is the agent.yaml file of `athenz-mesh agent`. Every field documents what
// its zero value means; docs/agent.md is the reference with an example. The smallest
// working file names the issuer and one identity.
type AgentConfig struct {
	// Issuer says how to reach the issuer.
	Issuer AgentIssuerConfig `yaml:"issuer"`
	// Mode is "sidecar" (the configured identities, for peers allowed by uid/gid) or
	// "node" (a DaemonSet: the identities of the pods on the node). Empty: sidecar.
	Mode string `yaml:"mode"`
	// SDS configures the socket serving SDS, the Workload API and gRPC health.
	SDS AgentSDSConfig `yaml:"sds"`
	// Sidecar configures sidecar mode.
	Sidecar AgentSidecarConfig `yaml:"sidecar"`
	// Node configures node mode; required with mode: node.
	Node *AgentNodeConfig `yaml:"node"`
	// Certificates sets the names the agent puts in its requests and its renewal
	// schedule.
	Certificates AgentCertificatesConfig `yaml:"certificates"`
	// Identities are the identities to keep. At least one in sidecar mode.
	Identities []AgentIdentityConfig `yaml:"identities"`
	// Files, when Dir is set, also writes credentials in the SIA file layout.
	Files AgentFilesConfig `yaml:"files"`
	// TokenAPI configures the local token HTTP API.
	TokenAPI AgentTokenAPIConfig `yaml:"token_api"`
	// Metrics configures the metrics and health listener.
	Metrics AgentMetricsConfig `yaml:"metrics"`
	// Log configures the agent log.
	Log AgentLogConfig `yaml:"log"`
}

// Defaults and names of AgentConfig.
const (
	DefaultAgentSocket    = "/run/athenz-mesh/agent.sock"
	DefaultAgentMetrics   = "127.0.0.1:9195"
	DefaultAgentDNSSuffix = "athenz.cloud"
	ModeSidecar           = "sidecar"
	ModeNode              = "node"
	ListenOffValue        = "off"
	// DefaultServiceAccountTokenFile and DefaultServiceAccountCAFile are a pod's own
	// service-account credentials, used for the kubelet in node mode.
	DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultServiceAccountCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	attestK8s                      = "k8s"
	attestJoinToken                = "join_token"
	attestNToken                   = "ntoken"
	attestRegisterToken            = "register_token"
	defaultIstioProviderLabel      = "athenz-mesh.istio"
)

// AgentIssuerConfig says how to reach the issuer.
type AgentIssuerConfig struct {
	// URL is the issuer's ZTS API base, e.g. https://issuer.athenz-mesh:4443/zts/v1.
	// Required, https.
	URL string `yaml:"url"`
	// CAFile is a PEM bundle trusted for the issuer's TLS certificate (the issuer's
	// ca/ca.cert.pem). Empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one call. Zero: 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// AgentSDSConfig configures the socket.
type AgentSDSConfig struct {
	// Socket is the Unix socket path. Empty: DefaultAgentSocket; Istio's proxies look at
	// /run/secrets/workload-spiffe-uds/socket.
	Socket string `yaml:"socket"`
	// SocketMode is the socket's mode, octal in a string. Empty: "0666".
	SocketMode FileMode `yaml:"socket_mode"`
	// DirMode is the mode of parent directories created for the socket. Empty: "0755".
	DirMode FileMode `yaml:"dir_mode"`
	// Validation is auto, trusted_ca or spiffe (docs/agent-sds.md). Empty: auto.
	Validation string `yaml:"validation"`
	// DisableWorkloadAPI turns off the SPIFFE Workload API. False: served.
	DisableWorkloadAPI bool `yaml:"disable_workload_api"`
}

// AgentSidecarConfig configures sidecar mode: which local users may receive the
// identities.
type AgentSidecarConfig struct {
	// UIDs and GIDs are the peers allowed (any match). Both empty: the agent's own uid
	// and root.
	UIDs []uint32 `yaml:"uids"`
	GIDs []uint32 `yaml:"gids"`
}

// AgentNodeConfig configures node mode.
type AgentNodeConfig struct {
	// Provider is the issuer's k8s provider the pods' identities register through.
	// Required, unless istio_ca is set (then unused: the issuer's istio.provider names
	// those certificates).
	Provider string `yaml:"provider"`
	// Mapping maps a pod's namespace and service account to its Athenz service, the same
	// rules as the issuer's k8s provider mapping (with istio_ca, its istio.mapping); it
	// must agree with it.
	Mapping k8s.Mapping `yaml:"mapping"`
	// KeyType is ecdsa-p256 or rsa-2048. Empty: ecdsa-p256.
	KeyType string `yaml:"key_type"`
	// Validity is the certificate lifetime asked for. Zero: the issuer's default.
	Validity time.Duration `yaml:"validity"`
	// TokenPath is where a pod's projected token is on the host, with {pod_uid}. Empty:
	// DefaultKubeletTokenPath (the "athenz-mesh-token" volume), or with istio_ca
	// DefaultIstioKubeletTokenPath (the "istio-token" volume of Istio's injection).
	TokenPath string `yaml:"token_path"`
	// ProcRoot is the host's /proc as mounted in the agent. Empty: /proc.
	ProcRoot string `yaml:"proc_root"`
	// IdleGrace is how long an identity no pod asks for is kept. Zero: 10m.
	IdleGrace time.Duration `yaml:"idle_grace"`
	// Kubelet says how to list the node's pods.
	Kubelet AgentKubeletConfig `yaml:"kubelet"`
	// IstioCA, when set, obtains the pods' certificates from the issuer's Istio CA API
	// (CreateCertificate) instead of registering them through provider: they carry the
	// pods' Istio identities spiffe://<trust domain>/ns/<ns>/sa/<sa>, as Istio's secure
	// naming and AuthorizationPolicy principals expect, with the Athenz principal in the
	// CN. Nil: the ZTS API, with the Athenz SPIFFE form.
	IstioCA *AgentIstioCAConfig `yaml:"istio_ca"`
}

// AgentIstioCAConfig says how node mode reaches the issuer's Istio CA API. The TLS roots
// are issuer.ca_file; the service-account token sent is each pod's own projected token,
// read from node.token_path. Role certificates and tokens are not available this way.
type AgentIstioCAConfig struct {
	// Address is the gRPC address of the issuer's Istio CA API (its istio.listen), as
	// host:port, e.g. athenz-mesh-issuer.athenz-mesh.svc:15012. Required.
	Address string `yaml:"address"`
	// ClusterID is the ClusterID metadata sent: one of the issuer's istio.clusters[].id
	// (Istio's default is "Kubernetes"). Required.
	ClusterID string `yaml:"cluster_id"`
	// ServerName is the name the issuer's TLS certificate is checked against. Empty: the
	// host of Address.
	ServerName string `yaml:"server_name"`
	// TrustDomain is the mesh's trust domain; it must be the issuer's
	// istio.trust_domain. Empty: cluster.local.
	TrustDomain string `yaml:"trust_domain"`
	// Audience is the audience the pods' tokens must carry, one of the issuer's
	// istio.audiences; a pod whose token lacks it is not served. Empty: istio-ca (that of
	// the "istio-token" volume Istio's injection adds).
	Audience string `yaml:"audience"`
}

// AgentKubeletConfig says how to reach the kubelet's pod list.
type AgentKubeletConfig struct {
	// URL is the pod list. Empty: https://127.0.0.1:10250/pods.
	URL string `yaml:"url"`
	// TokenFile is the bearer token. Empty: the pod's service-account token.
	TokenFile string `yaml:"token_file"`
	// CAFile is trusted for the kubelet's serving certificate. Empty: the
	// service-account ca.crt (the cluster CA).
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify does not verify the kubelet's certificate (self-signed kubelet
	// certificates). False: verified.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// AgentCertificatesConfig sets request names and the renewal schedule.
type AgentCertificatesConfig struct {
	// DNSSuffixes are the suffixes of the DNS SAN <service>.<domain-dashed>.<suffix>; they
	// must be among the issuer's certificates.dns_suffixes. Empty: ["athenz.cloud"]
	// (the issuer's default). ["none"]: no DNS SAN.
	DNSSuffixes []string `yaml:"dns_suffixes"`
	// SpiffeTrustDomain must equal the issuer's certificates.spiffe_trust_domain. Empty:
	// the Athenz short form spiffe://<domain>/sa/<service>.
	SpiffeTrustDomain string `yaml:"spiffe_trust_domain"`
	// TrustDomains are the trust domains the bundle anchors (SPIFFE validator, Workload
	// API). Empty: SpiffeTrustDomain, else the domains of the identities and roles.
	TrustDomains []string `yaml:"trust_domains"`
	// RenewAfter and RenewBefore bound the jittered renewal point as fractions of the
	// lifetime. Zero: 0.5 and 0.75.
	RenewAfter  float64 `yaml:"renew_after"`
	RenewBefore float64 `yaml:"renew_before"`
	// RetryMin and RetryMax bound the backoff after a failure. Zero: 1s and 5m.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
}

// AgentIdentityConfig is one identity.
type AgentIdentityConfig struct {
	// Domain and Service name it. Required.
	Domain  string `yaml:"domain"`
	Service string `yaml:"service"`
	// Provider is the issuer provider to register through. Required.
	Provider string `yaml:"provider"`
	// InstanceID is the instance id. Empty: the pod UID from the token (k8s), else the
	// host name.
	InstanceID string `yaml:"instance_id"`
	// Namespace is the SPIFFE namespace (trust-domain form). Empty: the token's (k8s),
	// else "default".
	Namespace string `yaml:"namespace"`
	// KeyType is ecdsa-p256 or rsa-2048. Empty: ecdsa-p256.
	KeyType string `yaml:"key_type"`
	// Validity is the certificate lifetime asked for. Zero: the issuer's default.
	Validity time.Duration `yaml:"validity"`
	// Attestation says how the identity is proven at registration. Required.
	Attestation AgentAttestationConfig `yaml:"attestation"`
	// Roles are role certificates to keep, as "<domain>:role.<role>".
	Roles []string `yaml:"roles"`
	// RoleValidity is the role certificate lifetime asked for. Zero: the issuer's.
	RoleValidity time.Duration `yaml:"role_validity"`
}

// AgentAttestationConfig is one attestation method and its parameters.
type AgentAttestationConfig struct {
	// Kind is k8s, join_token, ntoken or register_token. Required.
	Kind string `yaml:"kind"`
	// TokenFile is the token: the projected service-account token (k8s; empty: the
	// k8s collector's default), the join token or the register token file.
	TokenFile string `yaml:"token_file"`
	// Env names an environment variable holding the join or register token, instead of
	// TokenFile.
	Env string `yaml:"env"`
	// AfterUse is keep, remove or truncate: what to do with a spent join or register
	// token file. Empty: keep.
	AfterUse string `yaml:"after_use"`
	// KeyFile is the service's registered private key (ntoken). KeyID its id. Empty: "0".
	KeyFile string `yaml:"key_file"`
	KeyID   string `yaml:"key_id"`
}

// AgentFilesConfig configures the SIA file layout.
type AgentFilesConfig struct {
	// Dir is the root (SIA's /var/lib/sia). Empty: no files are written (the one-shot
	// commands need it).
	Dir string `yaml:"dir"`
	// KeyMode is the key files' mode: "0600" or, for a group, "0440"/"0640". Empty: 0600.
	KeyMode FileMode `yaml:"key_mode"`
	// CertMode is the certificate files' mode. Empty: 0644.
	CertMode FileMode `yaml:"cert_mode"`
}

// AgentTokenAPIConfig configures the token HTTP API (docs/agent-tokens.md); the tuning
// fields are TokenAPIConfig's, zero meaning its defaults.
type AgentTokenAPIConfig struct {
	// Listen is a loopback address such as 127.0.0.1:4080. Empty or "off": not served.
	Listen string `yaml:"listen"`
	// RenewBefore is how long before a token's expiry it is fetched again. Zero:
	// DefaultTokenRenewBefore (5m).
	RenewBefore time.Duration `yaml:"renew_before"`
	// AccessTokenLifetime and RoleTokenLifetime are asked for when the application does
	// not say. Zero: the issuer's defaults.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	RoleTokenLifetime   time.Duration `yaml:"role_token_lifetime"`
	// MaxCachedTokens bounds the token cache. Zero: DefaultMaxCachedTokens (1024).
	MaxCachedTokens int `yaml:"max_cached_tokens"`
	// NegativeTTL is how long an issuer's refusal is remembered and repeated. Zero:
	// DefaultTokenNegativeTTL (10s).
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// NTokenKeyVersion is the key version n-tokens name. Empty: DefaultNTokenKeyVersion
	// ("0").
	NTokenKeyVersion string `yaml:"ntoken_key_version"`
	// NTokenLifetime is an n-token's lifetime. Zero: DefaultNTokenLifetime (1h).
	NTokenLifetime time.Duration `yaml:"ntoken_lifetime"`
}

// TokenAPIConfig is the library configuration of the token API for these settings.
func (c AgentTokenAPIConfig) TokenAPIConfig() TokenAPIConfig {
	return TokenAPIConfig{
		Address: c.Listen, RenewBefore: c.RenewBefore, AccessTokenLifetime: c.AccessTokenLifetime,
		RoleTokenLifetime: c.RoleTokenLifetime, MaxCachedTokens: c.MaxCachedTokens, NegativeTTL: c.NegativeTTL,
		NTokenKeyVersion: c.NTokenKeyVersion, NTokenLifetime: c.NTokenLifetime,
	}
}

// AgentMetricsConfig configures /metrics, /healthz, /readyz and /status.
type AgentMetricsConfig struct {
	// Listen is the address. Empty: DefaultAgentMetrics; "off": not served.
	Listen string `yaml:"listen"`
}

// AgentLogConfig configures the log.
type AgentLogConfig struct {
	// Level is debug, info, warn or error. Empty: info.
	Level string `yaml:"level"`
	// Format is json or text. Empty: json.
	Format string `yaml:"format"`
}

// FileMode is a permission mode written in octal in a YAML string ("0640").
type FileMode fs.FileMode

// UnmarshalYAML reads the mode in octal, with or without a leading 0 or 0o.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimPrefix(strings.TrimPrefix(n.Value, "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("line %d: mode %q: want octal permission bits such as \"0640\"", n.Line, n.Value)
	}
	*m = FileMode(v)
	return nil
}

// AgentConfigError is an invalid agent config: every problem found.
type AgentConfigError = yamlconfig.Error

// agentConfigKind names the agent's configuration in errors.
const agentConfigKind = "agent"

// LoadAgentConfig reads and strictly decodes path. It does not Validate.
func LoadAgentConfig(path string) (AgentConfig, error) {
	return yamlconfig.LoadFile[AgentConfig](path, agentConfigKind)
}

// DecodeAgentConfig decodes one YAML document strictly.
func DecodeAgentConfig(r io.Reader) (AgentConfig, error) {
	return yamlconfig.DecodeReader[AgentConfig](r, agentConfigKind)
}
