package policy

import (
	"embed"
	"fmt"
)

// regoSources holds the Rego policy that every bundle carries.
//
//go:embed rego/*.rego
var regoSources embed.FS

// regoModules lists the embedded Rego files and the bundle path of each. The bundle
// paths mirror the package names, as OPA tooling expects, and are stable: users refer to
// them in `opa test` and coverage reports.
var regoModules = []struct{ file, bundlePath string }{
	{"rego/athenz.authz.rego", "athenz/authz.rego"}, // package athenz.authz
	{"rego/envoy.authz.rego", "envoy/authz.rego"},   // package envoy.authz
}

// Rego entry points, as OPA query paths.
const (
	// RegoAllow is data.athenz.authz.allow: a boolean for the Athenz request in input.
	RegoAllow = "data.athenz.authz.allow"
	// RegoDecision is data.athenz.authz.decision: {"allow", "reason", "domain", "match"}.
	RegoDecision = "data.athenz.authz.decision"
	// RegoEnvoyAllow is data.envoy.authz.allow, opa-envoy-plugin's default decision path.
	RegoEnvoyAllow = "data.envoy.authz.allow"
	// RegoEnvoyResult is data.envoy.authz.result, opa-envoy-plugin's structured result
	// (configure the plugin with path "envoy/authz/result").
	RegoEnvoyResult = "data.envoy.authz.result"
)

// RegoModules returns the Rego policy that WriteBundle puts in every bundle, keyed by its
// path in the bundle. The caller owns the returned map and slices.
func RegoModules() map[string][]byte {
	out := make(map[string][]byte, len(regoModules))
	for _, m := range regoModules {
		b, err := regoSources.ReadFile(m.file)
		if err != nil {
			// The files are embedded at build time; a miss is a build defect.
			panic(fmt.Sprintf("policy: embedded Rego %s missing: %v", m.file, err))
		}
		out[m.bundlePath] = b
	}
	return out
}
