package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/athenz-mesh/athenz-mesh/policy"
	"github.com/athenz-mesh/athenz-mesh/policy/policytest"
)

// TestDifferential holds the native evaluator and the bundle's Rego (in the OPA library)
// to the same answers on generated worlds: for every request, allow, reason and the id of
// the deciding assertion must be identical. Both evaluate the bundle as written and read
// back: the evaluator the snapshot ReadBundle returns, OPA the same bytes.
func TestDifferential(t *testing.T) {
	const requestsPerWorld = 2000
	worlds := []struct {
		seed  uint64
		shape policytest.Shape
	}{
		{1, policytest.Shape{}},
		{2, policytest.Shape{}},
		{3, policytest.Shape{Domains: 2, RolesPerDomain: 4, Principals: 6, Actions: 2, Entities: 2}}, // dense overlaps
		{4, policytest.Shape{Domains: 5, RolesPerDomain: 12, MembersPerRole: 6, AssertionsPerPolicy: 10}},
		{5, policytest.Shape{Principals: 30, Entities: 10}},
	}
	seen := map[policy.Reason]int{}
	total := 0
	for _, w := range worlds {
		t.Run(fmt.Sprintf("seed%d", w.seed), func(t *testing.T) {
			g := policytest.New(w.seed, w.shape)
			compiled, err := policy.Compile(g.Domains(), policy.CompileOptions{})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			var raw bytes.Buffer
			if err := policy.WriteBundle(&raw, compiled, policy.BundleOptions{}); err != nil {
				t.Fatal(err)
			}
			read, err := policy.ReadBundle(bytes.NewReader(raw.Bytes()), policy.ReadOptions{})
			if err != nil {
				t.Fatalf("ReadBundle of a compiled bundle: %v", err)
			}
			ev, err := policy.NewEvaluator(read.Compiled)
			if err != nil {
				t.Fatal(err)
			}
			opa := newOPADecider(t, raw.Bytes())
			requests := withEdgeCases(g.Requests(requestsPerWorld), read.Compiled)
			total += len(requests)

			type result struct {
				i    int
				want policy.Decision
				got  opaDecision
			}
			var (
				mu         sync.Mutex
				mismatches []result
				wg         sync.WaitGroup
			)
			const workers = 2
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(requests); i += workers {
						want := ev.Decide(requests[i])
						got, err := opa.decide(requests[i])
						mu.Lock()
						if err != nil {
							t.Errorf("request %d: OPA: %v", i, err)
						} else if !got.agrees(want) {
							mismatches = append(mismatches, result{i, want, got})
						}
						seen[want.Reason]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			sort.Slice(mismatches, func(a, b int) bool { return mismatches[a].i < mismatches[b].i })
			for n, m := range mismatches {
				if n == 10 {
					t.Errorf("... and %d more mismatches", len(mismatches)-n)
					break
				}
				in, _ := json.Marshal(requestInput(requests[m.i]))
				t.Errorf("request %d: %s\n  native: allowed=%v reason=%s match=%d\n  rego:   allowed=%v reason=%s match=%d",
					m.i, in, m.want.Allowed, m.want.Reason, nativeMatch(m.want), m.got.Allow, m.got.Reason, m.got.matchID())
			}
		})
	}
	t.Logf("%d requests; reasons: %v", total, seen)
	if total < 10000 {
		t.Errorf("only %d requests, want at least 10000", total)
	}
	for _, r := range []policy.Reason{policy.ReasonAllowed, policy.ReasonDenied, policy.ReasonNoMatch, policy.ReasonNotMember,
		policy.ReasonMemberExpired, policy.ReasonUnknownDomain, policy.ReasonDomainMismatch, policy.ReasonInvalid} {
		if seen[r] == 0 {
			t.Errorf("no generated request decided %s: the generator no longer covers it", r)
		}
	}
}

// withEdgeCases adds requests the generator draws rarely: times exactly at and just after
// membership expiries, empty principals and actions, roles in upper case.
func withEdgeCases(reqs []policy.Request, c *policy.Compiled) []policy.Request {
	var expiries []int64
	for _, name := range sortedDomains(c) {
		d := c.Domains[name]
		for _, p := range sortedPrincipals(d) {
			for _, e := range d.Members[p] {
				if e != 0 {
					expiries = append(expiries, e)
				}
			}
		}
		for _, p := range d.Prefixes {
			if p.Expires != 0 {
				expiries = append(expiries, p.Expires)
			}
		}
	}
	sort.Slice(expiries, func(i, j int) bool { return expiries[i] < expiries[j] })
	out := make([]policy.Request, 0, len(reqs)*5/4)
	for i, r := range reqs {
		out = append(out, r)
		switch i % 16 {
		case 0, 1, 2, 3:
			if len(expiries) > 0 && r.TokenDomain == "" {
				at := r
				e := expiries[(i/16)%len(expiries)]
				at.Time = time.Unix(0, e+int64(i%2)) // at, then one nanosecond after
				out = append(out, at)
			}
		case 5:
			x := r
			x.Action = ""
			out = append(out, x)
		case 7:
			x := r
			x.Principal = ""
			out = append(out, x)
		case 9:
			if r.TokenDomain != "" {
				x := r
				x.Roles = append([]string(nil), r.Roles...)
				for j := range x.Roles {
					x.Roles[j] = strings.ToUpper(x.Roles[j])
				}
				x.TokenDomain = strings.ToUpper(x.TokenDomain)
				out = append(out, x)
			}
		}
	}
	return out
}

func sortedDomains(c *policy.Compiled) []string {
	names := make([]string, 0, len(c.Domains))
	for n := range c.Domains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func sortedPrincipals(d *policy.CompiledDomain) []string {
	names := make([]string, 0, len(d.Members))
	for n := range d.Members {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func nativeMatch(d policy.Decision) int {
	if d.Match == nil {
		return -1
	}
	return d.Match.ID
}

// opaDecider evaluates data.athenz.authz.decision in the OPA library.
type opaDecider struct {
	pq rego.PreparedEvalQuery
}

func newOPADecider(t *testing.T, raw []byte) *opaDecider {
	t.Helper()
	b, err := bundle.NewReader(bytes.NewReader(raw)).Read()
	if err != nil {
		t.Fatalf("OPA bundle reader: %v", err)
	}
	pq, err := rego.New(rego.Query("data.athenz.authz.decision"), rego.ParsedBundle("athenz-mesh", &b)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &opaDecider{pq: pq}
}

type opaDecision struct {
	Allow  bool          `json:"allow"`
	Reason policy.Reason `json:"reason"`
	Domain string        `json:"domain"`
	Match  *struct {
		ID int `json:"id"`
	} `json:"match"`
}

func (d opaDecision) matchID() int {
	if d.Match == nil {
		return -1
	}
	return d.Match.ID
}

func (d opaDecision) agrees(n policy.Decision) bool {
	return d.Allow == n.Allowed && d.Reason == n.Reason && d.matchID() == nativeMatch(n)
}

func (o *opaDecider) decide(r policy.Request) (opaDecision, error) {
	var d opaDecision
	rs, err := o.pq.Eval(context.Background(), rego.EvalInput(requestInput(r)))
	if err != nil {
		return d, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return d, fmt.Errorf("%d results", len(rs))
	}
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal(b, &d)
}

// requestInput is the Rego input for a Request.
func requestInput(r policy.Request) map[string]any {
	in := map[string]any{"principal": r.Principal, "action": r.Action, "resource": r.Resource}
	if !r.Time.IsZero() {
		in["time"] = r.Time.Format(time.RFC3339Nano)
	}
	if r.TokenDomain != "" {
		in["domain"] = r.TokenDomain
		roles := make([]any, len(r.Roles))
		for i, x := range r.Roles {
			roles[i] = x
		}
		in["roles"] = roles
	}
	return in
}
