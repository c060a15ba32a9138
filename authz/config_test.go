package authz

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig("testdata/authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Bundle.LongPollWait != 30*time.Second || cfg.Decision.Mapping.Namespaces["sports-prod"] != "sports" ||
		cfg.Credentials.RoleToken.PublicKeys["0"] == "" || *cfg.DecisionLog.AllowSampleRate != 0.1 {
		t.Errorf("decoded %+v", cfg)
	}
}

// TestEveryFieldDocumented walks Config's YAML keys: each must appear in the example
// config and in docs/authz.md.
func TestEveryFieldDocumented(t *testing.T) {
	example, err := os.ReadFile("testdata/authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/authz.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range yamlconfig.Keys(reflect.TypeFor[Config]()) {
		key := path[strings.LastIndex(path, ".")+1:]
		if !strings.Contains(string(example), key+":") {
			t.Errorf("%s is not in testdata/authz.yaml", path)
		}
		if !strings.Contains(string(doc), "`"+path+"`") {
			t.Errorf("%s is not documented in docs/authz.md (as `%s`)", path, path)
		}
	}
}

func TestDecodeConfigStrict(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown keys are errors with their line", "bundle:\n  file: b.tgz\n  pol_interval: 1s\nlisten:\n  grcp: x\n",
			[]string{"line 3: field pol_interval not found", "line 5: field grcp not found"}},
		{"wrong type", "bundle:\n  poll_interval: often\n", []string{"line 2"}},
		{"second document", "bundle: {file: a}\n---\nbundle: {file: b}\n", []string{"a second YAML document"}},
		{"not a mapping", "- a\n", []string{"line 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeConfig(strings.NewReader(tc.yaml))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	cfg, err := DecodeConfig(strings.NewReader(""))
	if err != nil || !reflect.DeepEqual(cfg, Config{}) {
		t.Errorf("empty file: %+v, %v", cfg, err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	yes, nan := true, 2.0
	cfg := Config{
		Listen: ListenConfig{GRPC: "nope", GRPCSocketMode: "999", MaxRecvBytes: -1},
		Bundle: BundleConfig{File: "a", URL: "ftp://b", PollInterval: -time.Second, RequireSignature: &yes,
			VerificationKeys: []VerificationKey{{File: "k"}, {KeyID: "default", File: "k2"}, {KeyID: "x"}}},
		Decision: DecisionConfig{FailureMode: "maybe", StatusOnError: 200, Headers: HeadersConfig{Principal: "X-Bad Header"},
			Explain: ExplainConfig{Principals: []string{"Sports.API"}}, Bypass: BypassConfig{Paths: []string{"healthz"}, PathPrefixes: []string{"/"}},
			Cache: CacheConfig{Size: -1}, Mapping: &MappingConfig{Hosts: map[string]string{"UPPER.example.com": "x"}}},
		DecisionLog: DecisionLogConfig{AllowSampleRate: &nan},
		HTTP:        HTTPModeConfig{PathPrefix: "authz/"},
		Credentials: CredentialsConfig{Order: []string{"mtls", "mtls", "kerberos"}, AccessToken: AccessTokenConfig{JWKSFile: "a", JWKSURL: "b"}},
		Log:         LogConfig{Level: "loud", Format: "xml"},
	}
	err := cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"listen.grpc", "listen.grpc_socket_mode", "listen.max_recv_bytes",
		"bundle: set file or url, not both", "bundle.url", "bundle.poll_interval", `key_id: "default" appears twice`, "verification_keys[2].file",
		"decision.failure_mode", "decision.status_on_error", "decision.headers.principal", "decision.explain.principals[0]",
		"decision.bypass.paths[0]", "decision.bypass.path_prefixes[0]", "decision.cache.size", "decision.mapping",
		"decision_log.allow_sample_rate", "decision_log: sampling", "http.path_prefix",
		"credentials.order[1]", "credentials.order[2]", "credentials.access_token: set jwks_file or jwks_url, not both",
		"log.level", "log.format",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
	if n := len(ce.Problems); n < 24 {
		t.Errorf("%d problems reported, want every one (at least 24)", n)
	}
	if err := (&Config{Bundle: BundleConfig{File: "b.tgz"}}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	if err := (&Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "bundle: set file or url") {
		t.Errorf("empty config: %v", err)
	}
}
