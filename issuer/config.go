package issuer

import (
	"io"
	"time"

	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

// Config is the issuer.yaml file. Every field documents what its zero value means; the
// smallest working file names only the domains directory (domains.dir), and everything
// else (CA, keys, database, TLS server certificate) is created in the data directory on
// first start when ca.create is set, or read from there.
type Config struct {
	// Listen says where the server listens.
	Listen ListenConfig `yaml:"listen"`
	// TLS configures the HTTPS server certificate and client certificates.
	TLS TLSConfig `yaml:"tls"`
	// DataDir holds the generated keys, the SQLite database and, by default, the CA
	// directory. Created with mode 0700 when missing. Empty: DefaultDataDir.
	DataDir string `yaml:"data_dir"`
	// Store selects the certificate records database.
	Store StoreConfig `yaml:"store"`
	// CA says which CA signs certificates.
	CA CAConfig `yaml:"ca"`
	// Domains says where the Athenz domain files are.
	Domains DomainsConfig `yaml:"domains"`
	// Keys are the token, policy and bundle signing keys.
	Keys KeysConfig `yaml:"keys"`
	// Certificates sets the names and lifetimes of issued certificates.
	Certificates CertificatesConfig `yaml:"certificates"`
	// Tokens sets the issuer name and lifetimes of access and role tokens.
	Tokens TokensConfig `yaml:"tokens"`
	// ZTSProvider configures the built-in provider sys.auth.zts (n-tokens and register
	// tokens, as zts-svccert uses).
	ZTSProvider ZTSProviderConfig `yaml:"zts_provider"`
	// Providers are further instance providers, each with its attestor (join tokens,
	// Kubernetes service account tokens). Empty: only sys.auth.zts.
	Providers []ProviderConfig `yaml:"providers"`
	// Bundle configures the OPA bundle served at /zts/v1/bundle.
	Bundle BundleConfig `yaml:"bundle"`
	// Istio serves Istio's CA API (CreateCertificate) to istio-agent on its own gRPC
	// listener. Zero: off. See docs/issuer-istio.md.
	Istio IstioConfig `yaml:"istio"`
	// Log configures the server log.
	Log LogConfig `yaml:"log"`
}

// Defaults applied to zero Config fields.
const (
	DefaultListenAddr          = "127.0.0.1:4443"
	DefaultMetricsAddr         = "127.0.0.1:9194"
	DefaultDataDir             = "/var/lib/athenz-mesh/issuer"
	DefaultMaxBodyBytes        = 64 << 10
	DefaultShutdownGrace       = 10 * time.Second
	DefaultDomainsPoll         = 2 * time.Second
	DefaultPruneInterval       = time.Hour
	DefaultCertValidity        = 24 * time.Hour
	DefaultMaxCertValidity     = 30 * 24 * time.Hour
	DefaultAccessTokenLifetime = time.Hour
	DefaultRoleTokenLifetime   = 2 * time.Hour
	DefaultMaxTokenLifetime    = 30 * 24 * time.Hour
	DefaultDNSSuffix           = "athenz.cloud"
	DefaultKeyID               = "0"
	DefaultBundleKeyID         = "default"
	DefaultNTokenHeader        = "Athenz-Principal-Auth"
	DefaultPolicyExpiry        = 7 * 24 * time.Hour
	DefaultMaxLongPoll         = 5 * time.Minute
	// ListenOff, as the metrics address, turns the metrics listener off.
	ListenOff = "off"
	// ZTSProviderName is the built-in provider's name.
	ZTSProviderName = "sys.auth.zts"
)

// ListenConfig says where the server listens.
type ListenConfig struct {
	// Address is the HTTPS address of the ZTS API. Empty: DefaultListenAddr
	// (127.0.0.1:4443).
	Address string `yaml:"address"`
	// Metrics is a plain-HTTP address serving /metrics, /healthz and /readyz. Empty:
	// DefaultMetricsAddr (127.0.0.1:9194); "off": not served. /healthz and /readyz are
	// also served on Address.
	Metrics string `yaml:"metrics"`
	// MaxBodyBytes bounds every request body; larger bodies get 413. Zero:
	// DefaultMaxBodyBytes (64 KiB, four times the largest CSR accepted).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownGrace is how long in-flight requests get to finish on shutdown. Zero:
	// DefaultShutdownGrace (10s).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxLongPoll caps the ?wait= of bundle long polls. Zero: DefaultMaxLongPoll (5m).
	MaxLongPoll time.Duration `yaml:"max_long_poll"`
}

// TLSConfig configures HTTPS. Client certificates are requested on every connection
// and optional; they are verified against the CA's roots (and ClientCAFile), and the
// routes that need one (refresh, role certificates) refuse callers without one.
type TLSConfig struct {
	// CertFile and KeyFile are the server certificate (with its chain) and key, PEM. Both
	// empty: the issuer's own CA issues a server certificate at start and renews it before
	// it expires (for development and for clients that trust the CA's roots anyway).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Hostnames are the DNS names and IP addresses of the self-issued server certificate.
	// Empty: "localhost", "127.0.0.1", "::1" and the host of Tokens.Issuer.
	Hostnames []string `yaml:"hostnames"`
	// ClientCAFile is a PEM bundle of further roots that client certificates may chain
	// to (a previous CA). Empty: only the CA's roots.
	ClientCAFile string `yaml:"client_ca_file"`
}

// StoreConfig selects the certificate records database.
type StoreConfig struct {
	// Path is the SQLite file. Empty: issuer.db in DataDir. Ignored when DSN is set.
	Path string `yaml:"path"`
	// DSN selects PostgreSQL (several issuer replicas) with a URL or keyword/value
	// connection string. Empty: SQLite.
	DSN string `yaml:"dsn"`
	// MaxConns bounds the database connections. Zero: the store's default (10 for
	// PostgreSQL, 4 SQLite readers).
	MaxConns int `yaml:"max_conns"`
	// CertificateRetention is how long records are kept after their certificate expired.
	// Zero: 30 days.
	CertificateRetention time.Duration `yaml:"certificate_retention"`
	// RevocationRetention is how long a revoked instance stays blocked once its
	// certificates are pruned. Zero: 365 days.
	RevocationRetention time.Duration `yaml:"revocation_retention"`
	// PruneInterval is how often expired records and tokens are deleted. Zero:
	// DefaultPruneInterval (1h).
	PruneInterval time.Duration `yaml:"prune_interval"`
}

// CAConfig says which CA signs. Either Dir (a directory made by 'athenz-mesh issuer ca
// init') or KeyFile and CertFile (any PKI's key and chain).
type CAConfig struct {
	// Dir is a CA directory. Empty, and KeyFile empty: "ca" in DataDir.
	Dir string `yaml:"dir"`
	// Create makes a P-256 root CA in Dir when Dir has none, for development. False: a
	// missing CA is an error that says how to create one.
	Create bool `yaml:"create"`
	// KeyFile, CertFile, ChainFile and RootsFile name the CA's files (see issuer/ca
	// Config). Set KeyFile and CertFile together, instead of Dir.
	KeyFile   string `yaml:"key_file"`
	CertFile  string `yaml:"cert_file"`
	ChainFile string `yaml:"chain_file"`
	RootsFile string `yaml:"roots_file"`
	// AllowGroupReadableKey accepts a group-readable CA key (Kubernetes fsGroup). False.
	AllowGroupReadableKey bool `yaml:"allow_group_readable_key"`
	// Backdate is how far before signing NotBefore is set. Zero: 5m; negative: none.
	Backdate time.Duration `yaml:"backdate"`
}

// DomainsConfig says where the domain files (ZMS DomainData, JSON or YAML) are.
type DomainsConfig struct {
	// Dir holds one domain per file, loaded with policy.LoadDir. Required. Files are
	// re-read when any changes; a directory that fails to load keeps the last good data
	// in force (and is logged and counted).
	Dir string `yaml:"dir"`
	// PollInterval is how often Dir is checked for changes. Zero: DefaultDomainsPoll (2s).
	PollInterval time.Duration `yaml:"poll_interval"`
}

// KeysConfig names the signing keys. A key whose file is empty is generated (ECDSA P-256,
// mode 0600) in DataDir on first start and reused afterwards.
type KeysConfig struct {
	// ZTS signs access tokens, role tokens, register tokens and signed policy data; it is
	// published as sys.auth.zts and in /oauth2/keys. Empty file: DataDir/zts.key.pem.
	// Empty id: DefaultKeyID ("0").
	ZTS KeyConfig `yaml:"zts"`
	// ZMS signs policyData (zmsSignature), as ZMS would; published as sys.auth.zms.
	// Empty file: DataDir/zms.key.pem. Empty id: "0".
	ZMS KeyConfig `yaml:"zms"`
	// Bundle signs the OPA bundle (.signatures.json). Empty file: DataDir/bundle.key.pem,
	// with its public key written beside it as bundle.pub.pem for authz's
	// verification_keys. Empty id: DefaultBundleKeyID ("default").
	Bundle KeyConfig `yaml:"bundle"`
}

// KeyConfig is one signing key: a PEM private key file (RSA 2048+ or ECDSA) and its id.
type KeyConfig struct {
	File string `yaml:"file"`
	ID   string `yaml:"id"`
}

// CertificatesConfig sets the names and lifetimes of issued certificates.
type CertificatesConfig struct {
	// DNSSuffixes are the suffixes of service DNS SANs (<service>.<domain-dashed>.<suffix>)
	// and role certificate email SANs. Empty: DefaultDNSSuffix ("athenz.cloud", Athenz's).
	DNSSuffixes []string `yaml:"dns_suffixes"`
	// SpiffeTrustDomain selects the SPIFFE form spiffe://<td>/ns/<ns>/sa/<domain>.<service>
	// (and spiffe://<td>/ns/<domain>/ra/<role>). Empty: Athenz's basic forms
	// spiffe://<domain>/sa/<service> and spiffe://<domain>/ra/<role>.
	SpiffeTrustDomain string `yaml:"spiffe_trust_domain"`
	// AddSpiffeID adds the SPIFFE ID to certificates whose CSR has none. False: a
	// certificate carries one only when its CSR asked.
	AddSpiffeID bool `yaml:"add_spiffe_id"`
	// DefaultValidity is the lifetime when a request asks for none. Zero:
	// DefaultCertValidity (24h).
	DefaultValidity time.Duration `yaml:"default_validity"`
	// MaxValidity caps every certificate. Zero: DefaultMaxCertValidity (30 days).
	MaxValidity time.Duration `yaml:"max_validity"`
	// Subject lists the O, OU and C values passed from CSRs into certificates. Empty
	// lists drop that attribute (not refuse it).
	Subject SubjectConfig `yaml:"subject"`
}

// SubjectConfig lists the subject attributes allowed through (see ca.SubjectPolicy).
type SubjectConfig struct {
	Organizations       []string `yaml:"organizations"`
	OrganizationalUnits []string `yaml:"organizational_units"`
	Countries           []string `yaml:"countries"`
}

// TokensConfig sets the issuer name and token lifetimes.
type TokensConfig struct {
	// Issuer is the access token "iss" and the OpenID issuer, the public base URL of the
	// API. Empty: "https://<listen host>:<port>/zts/v1", with "localhost" for an
	// unspecified or loopback host.
	Issuer string `yaml:"issuer"`
	// Host is the role token "h" field. Empty: the host of Issuer.
	Host string `yaml:"host"`
	// AccessTokenLifetime is the access token lifetime when the request asks for none.
	// Zero: DefaultAccessTokenLifetime (1h).
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// RoleTokenLifetime is the role token lifetime when the request asks for none. Zero:
	// DefaultRoleTokenLifetime (2h).
	RoleTokenLifetime time.Duration `yaml:"role_token_lifetime"`
	// MaxLifetime caps access and role tokens. Zero: DefaultMaxTokenLifetime (30 days).
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// NTokenHeader is the header n-tokens come in. Empty: DefaultNTokenHeader
	// (Athenz-Principal-Auth).
	NTokenHeader string `yaml:"ntoken_header"`
	// PolicyExpiry is how long signed policy data is valid. Zero: DefaultPolicyExpiry
	// (7 days, as ZTS).
	PolicyExpiry time.Duration `yaml:"policy_expiry"`
}

// ZTSProviderConfig configures the built-in provider sys.auth.zts.
type ZTSProviderConfig struct {
	// Disabled turns sys.auth.zts off: POST /instance then accepts only Providers, and
	// register tokens are not minted. False: on.
	Disabled bool `yaml:"disabled"`
	// MaxValidity caps certificates registered through it. Zero: no cap beyond
	// Certificates.MaxValidity.
	MaxValidity time.Duration `yaml:"max_validity"`
	// RegisterTokenMaxAge is how long a register token stays usable. Zero: 30 minutes.
	RegisterTokenMaxAge time.Duration `yaml:"register_token_max_age"`
}

// Attestor kinds of ProviderConfig.Attestor.
const (
	AttestorJoinToken = "join_token"
	AttestorK8s       = "k8s"
)

// ProviderConfig is one instance provider. Its name is the "provider" of register
// requests and the principal the domain data must allow to launch services.
type ProviderConfig struct {
	// Name is the provider service, e.g. "athenz-mesh.k8s.prod". Required, unique, not
	// sys.auth.zts.
	Name string `yaml:"name"`
	// Attestor is "join_token" or "k8s". Required.
	Attestor string `yaml:"attestor"`
	// MaxValidity caps certificates registered through this provider. Zero: no cap
	// beyond Certificates.MaxValidity.
	MaxValidity time.Duration `yaml:"max_validity"`
	// K8s configures the "k8s" attestor; required for it, refused for others.
	K8s *K8sConfig `yaml:"k8s"`
}

// LogConfig configures the server log.
type LogConfig struct {
	// Level is debug, info, warn or error. Empty: info.
	Level string `yaml:"level"`
	// Format is json or text. Empty: json.
	Format string `yaml:"format"`
}

// BundleConfig configures the OPA bundle at /zts/v1/bundle.
type BundleConfig struct {
	// Disabled stops serving the bundle. False: served.
	Disabled bool `yaml:"disabled"`
	// Unsigned serves the bundle without .signatures.json. False: signed with Keys.Bundle.
	Unsigned bool `yaml:"unsigned"`
	// Scope is the signature's scope claim (authz bundle.scope). Empty: none.
	Scope string `yaml:"scope"`
}

// ConfigError lists every problem found in a configuration, with the file when known.
type ConfigError = yamlconfig.Error

// LoadConfig reads and strictly decodes path (see DecodeConfig). It does not Validate.
func LoadConfig(path string) (Config, error) { return yamlconfig.LoadFile[Config](path, configKind) }

// DecodeConfig decodes one YAML document strictly: unknown keys, values of the wrong type
// and a second document are errors naming their line. An empty document is the zero
// Config.
func DecodeConfig(r io.Reader) (Config, error) { return yamlconfig.DecodeReader[Config](r, configKind) }

// configKind names the issuer's configuration in errors.
const configKind = "issuer"
