package policy

import (
	"path/filepath"
	"testing"
)

// TestConformance runs the Athenz semantics kept as data (testdata/conformance and the
// quickstart example) through both evaluators: the native one via RunCases, and the
// bundle's Rego via the OPA library. Each case must meet its expectations in both, and the
// two must agree on the deciding assertion.
func TestConformance(t *testing.T) {
	for _, file := range []string{
		"testdata/conformance/cases.yaml",
		"testdata/cases/cases.yaml",
		"../examples/quickstart/cases.yaml",
	} {
		t.Run(filepath.ToSlash(file), func(t *testing.T) {
			cf, err := LoadCases(file)
			if err != nil {
				t.Fatal(err)
			}
			domains, err := LoadDir(cf.Domains)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Compile(domains, CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := NewEvaluator(c)
			if err != nil {
				t.Fatal(err)
			}
			rd := newRegoDecider(t, c)
			for _, res := range RunCases(ev, cf.Cases) {
				t.Run(res.Case.Name, func(t *testing.T) {
					if !res.Passed {
						t.Errorf("native (%s): %v", res.Case.Location(), res.Mismatches)
					}
					got := rd.decide(t, requestInput(res.Case.Request()))
					if got.Allow != res.Case.ExpectAllow {
						t.Errorf("rego allow = %v, want %v (%s)", got.Allow, res.Case.ExpectAllow, got)
					}
					if res.Case.Reason != "" && got.Reason != res.Case.Reason {
						t.Errorf("rego reason = %s, want %s", got.Reason, res.Case.Reason)
					}
					if got.matchID() != matchID(res.Decision) || got.Reason != res.Decision.Reason {
						t.Errorf("rego decided %s, native %s/%d", got, res.Decision.Reason, matchID(res.Decision))
					}
				})
			}
		})
	}
}
