package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/examples/quickstart"
	"github.com/athenz-mesh/athenz-mesh/internal/atomicfile"
)

// devPorts are the loopback ports dev mode listens on.
type devPorts struct {
	ZTS           int `json:"zts"`
	IssuerMetrics int `json:"issuer_metrics"`
	AuthzGRPC     int `json:"authz_grpc"`
	AuthzHTTP     int `json:"authz_http"`
	AuthzMetrics  int `json:"authz_metrics"`
	AgentMetrics  int `json:"agent_metrics"`
	TokenAPI      int `json:"token_api"`
}

// defaultDevPorts are the documented fixed ports (docs/dev.md): the ZTS port Athenz
// tools expect, and the defaults of each component.
var defaultDevPorts = devPorts{ZTS: 4443, IssuerMetrics: 9194, AuthzGRPC: 9191, AuthzHTTP: 9193, AuthzMetrics: 9192, AgentMetrics: 9195, TokenAPI: 4080}

// devPortNames are the names --ports accepts, in the order of devPorts.
var devPortNames = []string{"zts", "issuer-metrics", "authz-grpc", "authz-http", "authz-metrics", "agent-metrics", "token-api"}

func (p *devPorts) fields() []*int {
	return []*int{&p.ZTS, &p.IssuerMetrics, &p.AuthzGRPC, &p.AuthzHTTP, &p.AuthzMetrics, &p.AgentMetrics, &p.TokenAPI}
}

// parseDevPorts reads --ports: "" (the fixed defaults), "auto" (free ports chosen by the
// kernel), or "name=port,..." overriding some defaults.
func parseDevPorts(s string) (devPorts, error) {
	p := defaultDevPorts
	switch s {
	case "", "default":
		return p, nil
	case "auto":
		for _, f := range p.fields() {
			port, err := freePort()
			if err != nil {
				return p, err
			}
			*f = port
		}
		return p, nil
	}
	fields := p.fields()
	for item := range strings.SplitSeq(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		i := slices.Index(devPortNames, name)
		port, err := strconv.Atoi(value)
		if !ok || i < 0 || err != nil || port < 1 || port > 65535 {
			return p, fmt.Errorf("--ports %q: want auto, or name=port pairs with names %s", s, strings.Join(devPortNames, ", "))
		}
		*fields[i] = port
	}
	seen := map[int]bool{}
	for _, f := range fields {
		if seen[*f] {
			return p, fmt.Errorf("--ports %q: port %d is used twice", s, *f)
		}
		seen[*f] = true
	}
	return p, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// devIdentities are the identities the dev agent keeps: a partner's front end and the
// scores API, both in the quickstart domains, so that a client with one can call a
// server with the other.
var devIdentities = []string{"media.frontend", "sports.api"}

// devKeyService is the service whose key dev mode registers in the domain files, for
// Athenz's own zts-svccert.
const devKeyService = "media.frontend"

// devProvider is the join-token provider the dev agent registers through.
const devProvider = "athenz-mesh.dev"

// devLayout names every path of a dev directory.
type devLayout struct {
	Dir         string
	Domains     string
	IssuerData  string
	CACert      string
	AthenzConf  string
	Keys        string
	Tokens      string
	Socket      string
	AuthzSocket string
	Files       string
	Log         string
	IssuerYAML  string
	AuthzYAML   string
	AgentYAML   string
	Summary     string
	ServiceKey  string // "" when dev registered no key (--domains)
	seedDomains bool
}

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path is 108 bytes,
// with the terminating NUL).
const maxSocketPath = 107

func newDevLayout(dir, domains string) (devLayout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return devLayout{}, err
	}
	l := devLayout{
		Dir:         abs,
		Domains:     filepath.Join(abs, "domains"),
		IssuerData:  filepath.Join(abs, "issuer"),
		CACert:      filepath.Join(abs, "ca.cert.pem"),
		AthenzConf:  filepath.Join(abs, "athenz.conf"),
		Keys:        filepath.Join(abs, "keys"),
		Tokens:      filepath.Join(abs, "tokens"),
		Socket:      filepath.Join(abs, "agent.sock"),
		AuthzSocket: filepath.Join(abs, "authz.sock"),
		Files:       filepath.Join(abs, "sia"),
		Log:         filepath.Join(abs, "dev.log"),
		IssuerYAML:  filepath.Join(abs, "issuer.yaml"),
		AuthzYAML:   filepath.Join(abs, "authz.yaml"),
		AgentYAML:   filepath.Join(abs, "agent.yaml"),
		Summary:     filepath.Join(abs, "dev.json"),
	}
	if domains != "" {
		if l.Domains, err = filepath.Abs(domains); err != nil {
			return devLayout{}, err
		}
	} else {
		l.seedDomains = true
		l.ServiceKey = filepath.Join(l.Keys, devKeyService+".key.pem")
	}
	if len(l.Socket) > maxSocketPath {
		return devLayout{}, fmt.Errorf("--dir %s is too deep: the agent socket %s would be %d bytes, and Unix sockets allow %d; choose a shorter directory",
			dir, l.Socket, len(l.Socket), maxSocketPath)
	}
	return l, nil
}

// prepare creates the directory and, on first start, the domain files (the quickstart
// domains with the dev service key registered). A later start keeps what is there: the
// CA, the records, the keys and any edits to the domain files.
func (l devLayout) prepare() error {
	for _, d := range []string{l.Dir, l.Keys, l.Tokens} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if !l.seedDomains {
		st, err := os.Stat(l.Domains)
		if err != nil {
			return fmt.Errorf("--domains: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--domains %s is not a directory", l.Domains)
		}
		return nil
	}
	if _, err := os.Stat(l.Domains); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	key, err := loadOrCreateECKey(l.ServiceKey)
	if err != nil {
		return err
	}
	return seedDomains(l.Domains, devKeyService, key.Public())
}

// loadOrCreateECKey reads an "EC PRIVATE KEY" PEM file, or creates one (P-256, 0600) as
// Athenz tools read it.
func loadOrCreateECKey(path string) (crypto.Signer, error) {
	if data, err := os.ReadFile(path); err == nil {
		k, err := athenz.ParsePrivateKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// seedDomains writes the embedded quickstart domains to dir, with pub registered as key
// "0" of principal's service, as a ZMS admin would register it.
func seedDomains(dir, principal string, pub crypto.PublicKey) error {
	entry, err := athenz.EncodePublicKeyEntry(pub)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".domains-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files, err := fs.Glob(quickstart.Domains, "domains/*.yaml")
	if err != nil {
		return err
	}
	registered := false
	for _, name := range files {
		data, err := fs.ReadFile(quickstart.Domains, name)
		if err != nil {
			return err
		}
		out, ok, err := addServiceKey(data, principal, "0", entry)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		registered = registered || ok
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(name)), out, 0o644); err != nil {
			return err
		}
	}
	if !registered {
		return fmt.Errorf("the example domains have no service %s to register the dev key with", principal)
	}
	return os.Rename(tmp, dir)
}

// addServiceKey adds {id, key} to the publicKeys of service principal in one domain
// file, keeping its comments; ok reports whether the file has that service.
func addServiceKey(data []byte, principal, id, key string) (out []byte, ok bool, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false, err
	}
	if len(doc.Content) == 0 {
		return data, false, nil
	}
	services := mappingValue(doc.Content[0], "services")
	if services == nil {
		return data, false, nil
	}
	for _, svc := range services.Content {
		if name := mappingValue(svc, "name"); name == nil || name.Value != principal {
			continue
		}
		keys := mappingValue(svc, "publicKeys")
		if keys == nil {
			keys = &yaml.Node{Kind: yaml.SequenceNode}
			svc.Content = append(svc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "publicKeys"}, keys)
		}
		keys.Content = append(keys.Content, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "id"}, {Kind: yaml.ScalarNode, Value: id, Style: yaml.DoubleQuotedStyle},
			{Kind: yaml.ScalarNode, Value: "key"}, {Kind: yaml.ScalarNode, Value: key},
		}})
		out, err := yaml.Marshal(&doc)
		return out, true, err
	}
	return data, false, nil
}

// mappingValue is the value of key in a YAML mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeConfigs writes the three component configs dev mode runs, so that a user can
// read them and run each component alone with the same file.
func (l devLayout) writeConfigs(p devPorts) error {
	zts := "https://" + loopback(p.ZTS) + "/zts/v1"
	issuerYAML := fmt.Sprintf(`# Written by athenz-mesh dev; rewritten on each start.
listen:
  address: %s
  metrics: %s
data_dir: %s
ca:
  create: true
domains:
  dir: %s
  poll_interval: 500ms
tokens:
  issuer: %s
providers:
  - name: %s
    attestor: join_token
log:
  level: info
`, loopback(p.ZTS), loopback(p.IssuerMetrics), l.IssuerData, l.Domains, zts, devProvider)
	authzYAML := fmt.Sprintf(`# Written by athenz-mesh dev; rewritten on each start.
listen:
  grpc: %s
  grpc_socket: %s
  grpc_socket_mode: "0666"
  http: %s
  metrics: %s
bundle:
  url: %s/bundle
  long_poll_wait: 30s
  ca_file: %s
  verification_keys:
    - file: %s
decision:
  explain:
    principals: [user.alice]
  mapping:
    default_domain: sports
credentials:
  access_token:
    jwks_url: %s/oauth2/keys
    issuer: %s
log:
  level: info
`, loopback(p.AuthzGRPC), l.AuthzSocket, loopback(p.AuthzHTTP), loopback(p.AuthzMetrics), zts, l.CACert,
		filepath.Join(l.IssuerData, "bundle.pub.pem"), zts, zts)
	var ids strings.Builder
	for _, principal := range devIdentities {
		domain, service, _ := athenz.SplitPrincipal(principal)
		fmt.Fprintf(&ids, `  - domain: %s
    service: %s
    provider: %s
    attestation:
      kind: join_token
      token_file: %s
      after_use: remove
`, domain, service, devProvider, filepath.Join(l.Tokens, principal+".token"))
	}
	agentYAML := fmt.Sprintf(`# Written by athenz-mesh dev; rewritten on each start.
issuer:
  url: %s
  ca_file: %s
sds:
  socket: %s
identities:
%sfiles:
  dir: %s
token_api:
  listen: %s
metrics:
  listen: %s
log:
  level: info
`, zts, l.CACert, l.Socket, ids.String(), l.Files, loopback(p.TokenAPI), loopback(p.AgentMetrics))
	for path, body := range map[string]string{l.IssuerYAML: issuerYAML, l.AuthzYAML: authzYAML, l.AgentYAML: agentYAML} {
		if err := writeFileAtomic(path, []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// devSummary is DIR/dev.json: what a user or a test needs to reach the running parts.
type devSummary struct {
	ZTSURL          string   `json:"zts_url"`
	CACert          string   `json:"ca_cert"`
	AthenzConf      string   `json:"athenz_conf"`
	AuthzGRPC       string   `json:"authz_grpc"`
	AuthzHTTP       string   `json:"authz_http"`
	AuthzSocket     string   `json:"authz_socket"`
	SDSSocket       string   `json:"sds_socket"`
	WorkloadSocket  string   `json:"workload_api_socket"`
	TokenAPI        string   `json:"token_api"`
	Identities      []string `json:"identities"`
	FilesDir        string   `json:"files_dir"`
	Domains         string   `json:"domains"`
	ServiceKey      string   `json:"service_key,omitempty"`
	ServiceKeyOwner string   `json:"service_key_principal,omitempty"`
	ServiceKeyID    string   `json:"service_key_version,omitempty"`
	Configs         []string `json:"configs"`
	Log             string   `json:"log"`
	Ports           devPorts `json:"ports"`
}

func (l devLayout) summary(p devPorts) devSummary {
	s := devSummary{
		ZTSURL:         "https://" + loopback(p.ZTS) + "/zts/v1",
		CACert:         l.CACert,
		AthenzConf:     l.AthenzConf,
		AuthzGRPC:      loopback(p.AuthzGRPC),
		AuthzHTTP:      "http://" + loopback(p.AuthzHTTP),
		AuthzSocket:    l.AuthzSocket,
		SDSSocket:      l.Socket,
		WorkloadSocket: "unix://" + l.Socket,
		TokenAPI:       "http://" + loopback(p.TokenAPI),
		Identities:     devIdentities,
		FilesDir:       l.Files,
		Domains:        l.Domains,
		Configs:        []string{l.IssuerYAML, l.AuthzYAML, l.AgentYAML},
		Log:            l.Log,
		Ports:          p,
	}
	if l.ServiceKey != "" {
		s.ServiceKey, s.ServiceKeyOwner, s.ServiceKeyID = l.ServiceKey, devKeyService, "0"
	}
	return s
}

// writeAthenzConf writes athenz.conf as Athenz's client tools and zpe-updater read it.
func writeAthenzConf(path, ztsBase string, ztsKeyID string, ztsKey crypto.PublicKey) error {
	entry, err := athenz.EncodePublicKeyEntry(ztsKey)
	if err != nil {
		return err
	}
	conf := map[string]any{
		"ztsUrl":        ztsBase,
		"ztsPublicKeys": []map[string]string{{"id": ztsKeyID, "key": entry}},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), 0o644)
}

// writeFileAtomic replaces path with data (internal/atomicfile).
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	return atomicfile.Write(path, data, mode)
}
