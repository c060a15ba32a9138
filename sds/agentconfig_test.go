package sds

import (
	"strings"
	"testing"
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
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := DecodeAgentConfig(strings.NewReader(tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			ce, ok := err.(*AgentConfigError)
			if !ok {
				t.Fatalf("error %v, want *AgentConfigError", err)
			}
			if len(ce.Problems) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d matching %q", strings.Join(ce.Problems, "\n"), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(ce.Problems[i], w) {
					t.Errorf("problem %d = %q, want %q", i, ce.Problems[i], w)
				}
			}
		})
	}
}
