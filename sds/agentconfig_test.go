package sds

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

func TestAgentConfigExample(t *testing.T) {
	cfg, err := LoadAgentConfig("../cmd/athenz-mesh/testdata/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	mc, err := cfg.ManagerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(mc.Identities) != 1 || !mc.Identities[0].InstanceFromK8sToken || mc.Identities[0].Roles[0] != (RoleSpec{"sports", "readers"}) {
		t.Errorf("identities %+v", mc.Identities)
	}
	if fc := cfg.FilesConfig(); fc == nil || fc.KeyMode != 0o440 {
		t.Errorf("files %+v", fc)
	}
	if sc := cfg.ServerConfig(); sc.SocketPath != IstioSocketPath || len(sc.ReadyIdentities) != 1 {
		t.Errorf("server %+v", sc)
	}
}

func TestAgentConfigProblems(t *testing.T) {
	const ok = "issuer: {url: https://issuer:4443/zts/v1}\n"
	const id = "identities:\n  - domain: sports\n    service: api\n    provider: athenz-mesh.k8s\n    attestation: {kind: k8s}\n"
	for _, tc := range []struct {
		name string
		yaml string
		want []string // substrings, one per problem
	}{
		{"minimal", ok + id, nil},
		{"no issuer, no identity", "", []string{"issuer.url is required", "at least one identity"}},
		{"plain http issuer", "issuer: {url: http://issuer/zts/v1}\n" + id, []string{"must be https"}},
		{"unknown mode", ok + id + "mode: mesh\n", []string{`mode "mesh"`}},
		{"node mode without node", ok + "mode: node\n", []string{"node: required"}},
		{"node mode token api", ok + "mode: node\nnode: {provider: p.k8s, mapping: {rule: {}}}\ntoken_api: {listen: 127.0.0.1:4080}\n", []string{"not available in node mode"}},
		{"token api tuning out of range", ok + id + "token_api: {listen: 127.0.0.1:4080, renew_before: -1s, negative_ttl: -2s, max_cached_tokens: -1, ntoken_key_version: \"a b\"}\n",
			[]string{"token_api.renew_before: -1s is negative", "token_api.negative_ttl: -2s is negative", "token_api.max_cached_tokens -1", "token_api.ntoken_key_version"}},
		{"node mode files", ok + "mode: node\nnode: {provider: p.k8s, mapping: {rule: {}}}\nfiles: {dir: /var/lib/sia}\n", []string{"files.dir: not available in node mode"}},
		{"node token path", ok + "mode: node\nnode: {provider: p.k8s, mapping: {rule: {}}, token_path: /x/token}\n", []string{"{pod_uid}"}},
		{"world-readable key", ok + id + "files: {dir: /x, key_mode: \"0644\"}\n", []string{"files.key_mode"}},
		{"bad mode syntax", ok + id + "files: {key_mode: \"rw\"}\n", []string{"octal"}},
		{"non-loopback token api", ok + id + "token_api: {listen: 0.0.0.0:4080}\n", []string{"loopback"}},
		{"bad validation", ok + id + "sds: {validation: strict}\n", []string{"sds.validation"}},
		{"renewal window", ok + id + "certificates: {renew_after: 0.8, renew_before: 0.6}\n", []string{"renew_after 0.80 is after"}},
		{"retry bounds", ok + id + "certificates: {retry_min: 1m, retry_max: 1s}\n", []string{"retry_max 1s is below"}},
		{"bad trust domain", ok + id + "certificates: {spiffe_trust_domain: \"Bad TD\"}\n", []string{"trust domain"}},
		{"log", ok + id + "log: {level: loud, format: xml}\n", []string{"log.level", "log.format"}},
		{"identity problems", ok + "identities:\n  - {domain: Sports!, service: a.b, provider: x, key_type: ed25519, roles: [readers], attestation: {kind: ntoken}}\n",
			[]string{"identities[0].domain", "identities[0].service", "identities[0].key_type", `identities[0].roles: "readers"`, "identities[0].attestation: n-token collector"}},
		{"attestation parameter of another kind", ok + "identities:\n  - {domain: sports, service: api, provider: p.q, attestation: {kind: k8s, key_file: /k}}\n",
			[]string{"key_file is not a parameter of kind k8s"}},
		{"join token without source", ok + "identities:\n  - {domain: sports, service: api, provider: p.q, attestation: {kind: join_token}}\n",
			[]string{"identities[0].attestation"}},
		{"duplicate identity", ok + id + "  - domain: sports\n    service: API\n    provider: p.q\n    attestation: {kind: k8s}\n", []string{"configured twice"}},
		{"unknown attestation", ok + "identities:\n  - {domain: sports, service: api, provider: p.q, attestation: {}}\n", []string{"kind is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkAgentConfigProblems(t, tc.yaml, tc.want) })
	}
}

// TestAgentConfigIstioCA checks node.istio_ca: what it requires, what it refuses
// (role certificates), and what it turns into.
func TestAgentConfigIstioCA(t *testing.T) {
	const node = "issuer: {url: https://issuer:4443/zts/v1}\nmode: node\nnode:\n  mapping: {rule: {}}\n"
	const ca = "  istio_ca: {address: issuer:15012, cluster_id: Kubernetes}\n"
	for _, tc := range []struct {
		name string
		yaml string
		want []string // substrings, one per problem
	}{
		{"minimal", node + ca, nil},
		{"every field", node + "  istio_ca: {address: \"[::1]:15012\", cluster_id: c1, server_name: issuer.svc, trust_domain: mesh.example, audience: my-aud}\n", nil},
		{"provider still checked when set", node + "  provider: \"bad provider\"\n" + ca, []string{"node.provider"}},
		{"provider required without istio_ca", node, []string{"node.provider"}},
		{"empty istio_ca", node + "  istio_ca: {}\n", []string{"node.istio_ca.address is required", "node.istio_ca.cluster_id is required"}},
		{"address without port", node + "  istio_ca: {address: issuer, cluster_id: Kubernetes}\n", []string{"want host:port"}},
		{"address without host", node + "  istio_ca: {address: \":15012\", cluster_id: Kubernetes}\n", []string{"want host:port"}},
		{"bad trust domain", node + "  istio_ca: {address: issuer:15012, cluster_id: K, trust_domain: \"Not A TD\"}\n", []string{"node.istio_ca.trust_domain"}},
		{"audience with spaces", node + "  istio_ca: {address: issuer:15012, cluster_id: K, audience: \" istio-ca\"}\n", []string{"node.istio_ca.audience"}},
		{"unknown key", node + "  istio_ca: {address: issuer:15012, cluster_id: K, clusterid: K}\n", []string{"clusterid"}},
		{"roles refused", node + ca + "identities:\n  - {domain: sports, service: api, provider: p.q, roles: [\"sports:role.readers\"], attestation: {kind: k8s}}\n",
			[]string{"identities[0].roles: role certificates are not available with node.istio_ca"}},
		{"token api still refused", node + ca + "token_api: {listen: 127.0.0.1:4080}\n", []string{"not available in node mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkAgentConfigProblems(t, tc.yaml, tc.want) })
	}
}

// TestAgentConfigIstioCASettings checks what a valid node.istio_ca becomes: the Istio
// settings with their defaults, the node template and the bundle's trust domains.
func TestAgentConfigIstioCASettings(t *testing.T) {
	for _, tc := range []struct {
		name         string
		yaml         string
		trustDomains []string
		td, aud      string
		provider     string
	}{
		{"defaults", "  istio_ca: {address: i:1, cluster_id: K}\n", []string{"cluster.local"}, "cluster.local", "istio-ca", defaultIstioProviderLabel},
		{"athenz trust domain too", "  provider: p.k8s\n  istio_ca: {address: i:1, cluster_id: K, trust_domain: mesh.example, audience: a}\ncertificates: {spiffe_trust_domain: athenz.example}\n",
			[]string{"mesh.example", "athenz.example"}, "mesh.example", "a", "p.k8s"},
		{"explicit trust domains win", "  istio_ca: {address: i:1, cluster_id: K}\ncertificates: {trust_domains: [x.example]}\n", []string{"x.example"}, "cluster.local", "istio-ca", defaultIstioProviderLabel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := DecodeAgentConfig(strings.NewReader("issuer: {url: https://i/zts/v1}\nmode: node\nnode:\n  mapping: {rule: {}}\n" + tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Fatal(err)
			}
			mc, err := cfg.ManagerConfig()
			if err != nil {
				t.Fatal(err)
			}
			ni := cfg.NodeIstio()
			m, err := NewManager(mc, ManagerDeps{Issuer: unusedIssuer{}, Sink: NewCache(), Node: &NodeIdentities{Demand: NewCache(), Istio: ni}})
			if err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			tds := m.trustDomainsLocked()
			m.mu.Unlock()
			if strings.Join(tds, ",") != strings.Join(tc.trustDomains, ",") {
				t.Errorf("bundle trust domains %v, want %v", tds, tc.trustDomains)
			}
			if ni == nil || ni.trustDomain() != tc.td || ni.audience() != tc.aud {
				t.Errorf("istio settings %+v, want %s %s", ni, tc.td, tc.aud)
			}
			if p := cfg.NodeTemplate().Provider; p != tc.provider {
				t.Errorf("template provider %q, want %q", p, tc.provider)
			}
		})
	}
}

// TestAgentConfigDocumented keeps docs/agent.md in step with AgentConfig: every key, as
// its dotted path or its last element in the reference tables.
func TestAgentConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range yamlconfig.Keys(reflect.TypeFor[AgentConfig]()) {
		last := path[strings.LastIndex(path, ".")+1:]
		// The tables name a key by its path, by its last element, or (a section such as
		// attestation) by the keys below it: `attestation.kind`.
		if !strings.Contains(string(doc), "`"+path+"`") && !strings.Contains(string(doc), "`"+last+"`") &&
			!strings.Contains(string(doc), "."+last+"`") && !strings.Contains(string(doc), "`"+last+".") {
			t.Errorf("%s is not documented in docs/agent.md", path)
		}
	}
}

// checkAgentConfigProblems decodes and validates yaml: no error when want is nil, else an
// *AgentConfigError whose problems contain want's substrings, one each, in order.
func checkAgentConfigProblems(t *testing.T, yaml string, want []string) {
	t.Helper()
	cfg, err := DecodeAgentConfig(strings.NewReader(yaml))
	if err == nil {
		err = cfg.Validate()
	}
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected: %v", err)
		}
		return
	}
	ce, ok := err.(*AgentConfigError)
	if !ok {
		t.Fatalf("error %v, want *AgentConfigError", err)
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d matching %q", strings.Join(ce.Problems, "\n"), len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(ce.Problems[i], w) {
			t.Errorf("problem %d = %q, want %q", i, ce.Problems[i], w)
		}
	}
}
