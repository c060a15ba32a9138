package policy_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/athenz-mesh/athenz-mesh/policy"
	"github.com/athenz-mesh/athenz-mesh/policy/policytest"
)

// benchWorld compiles a dense generated world of about 50 domains.
func benchWorld(b *testing.B) *policy.Compiled {
	b.Helper()
	g := policytest.New(7, policytest.Shape{Domains: 50, RolesPerDomain: 40, MembersPerRole: 20, Principals: 2000,
		PoliciesPerDomain: 10, AssertionsPerPolicy: 10, Dense: true})
	c, err := policy.Compile(g.Domains(), policy.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkWriteBundleSigned(b *testing.B) {
	c := benchWorld(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := policy.WriteBundle(&buf, c, policy.BundleOptions{SigningKey: key}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bundle-bytes")
}

func BenchmarkReadBundleVerified(b *testing.B) {
	c := benchWorld(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := policy.WriteBundle(&buf, c, policy.BundleOptions{SigningKey: key}); err != nil {
		b.Fatal(err)
	}
	opts := policy.ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": key.Public()}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.ReadBundle(bytes.NewReader(buf.Bytes()), opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegoDecision measures the bundle's Rego in the OPA library, for comparison with
// the native evaluator's benchmarks.
func BenchmarkRegoDecision(b *testing.B) {
	c := benchWorld(b)
	var buf bytes.Buffer
	if err := policy.WriteBundle(&buf, c, policy.BundleOptions{}); err != nil {
		b.Fatal(err)
	}
	bd, err := bundle.NewReader(&buf).Read()
	if err != nil {
		b.Fatal(err)
	}
	pq, err := rego.New(rego.Query("data.athenz.authz.decision"), rego.ParsedBundle("athenz-mesh", &bd)).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	reqs := policytest.New(8, policytest.Shape{Domains: 50, RolesPerDomain: 40, Principals: 2000}).Requests(1000)
	inputs := make([]map[string]any, len(reqs))
	for i, r := range reqs {
		inputs[i] = requestInput(r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := pq.Eval(context.Background(), rego.EvalInput(inputs[i%len(inputs)])); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkNativeDecision is BenchmarkRegoDecision's world and requests through the native
// evaluator, so one run gives the ratio between the two.
func BenchmarkNativeDecision(b *testing.B) {
	ev, err := policy.NewEvaluator(benchWorld(b))
	if err != nil {
		b.Fatal(err)
	}
	reqs := policytest.New(8, policytest.Shape{Domains: 50, RolesPerDomain: 40, Principals: 2000}).Requests(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev.Decide(reqs[i%len(reqs)])
		i++
	}
}
