package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// bigWorld builds the reference load: one principal in 1,000 roles of a domain
// with 2,000 roles and 100,000 assertions (1% with resource globs, 1% with action globs).
func bigWorld(tb testing.TB) (*Evaluator, []Request) {
	tb.Helper()
	const (
		roles      = 2000
		held       = 1000
		assertions = 100_000
		actions    = 20
		entities   = 5000
	)
	rng := rand.New(rand.NewPCG(1, 2))
	d := &Domain{Name: "big"}
	for i := 0; i < roles; i++ {
		r := &Role{Name: fmt.Sprintf("big:role.r%d", i)}
		if i < held {
			r.RoleMembers = append(r.RoleMembers, &RoleMember{MemberName: "big.client"})
		}
		for m := 0; m < 10; m++ {
			r.RoleMembers = append(r.RoleMembers, &RoleMember{MemberName: fmt.Sprintf("big.svc%d", rng.IntN(50_000))})
		}
		d.Roles = append(d.Roles, r)
	}
	var ps []*Policy
	for p := 0; p < assertions/100; p++ {
		pol := &Policy{Name: fmt.Sprintf("big:policy.p%d", p)}
		for a := 0; a < 100; a++ {
			as := &Assertion{
				Role:     fmt.Sprintf("big:role.r%d", rng.IntN(roles)),
				Action:   fmt.Sprintf("act%d", rng.IntN(actions)),
				Resource: fmt.Sprintf("big:res/%d", rng.IntN(entities)),
			}
			switch x := rng.IntN(100); {
			case x == 0:
				as.Resource = fmt.Sprintf("big:res/%d*", rng.IntN(50))
			case x == 1:
				as.Action = "act1*"
			case x < 6:
				as.Effect = Deny
			}
			pol.Assertions = append(pol.Assertions, as)
		}
		ps = append(ps, pol)
	}
	d.Policies = &SignedPolicies{Contents: &DomainPolicies{Domain: "big", Policies: ps}}
	c, err := Compile([]*Domain{d}, CompileOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEvaluator(c)
	if err != nil {
		tb.Fatal(err)
	}
	reqs := make([]Request, 1024)
	now := time.Now()
	for i := range reqs {
		reqs[i] = Request{
			Principal: "big.client",
			Action:    fmt.Sprintf("act%d", rng.IntN(actions)),
			Resource:  fmt.Sprintf("big:res/%d", rng.IntN(entities)),
			Time:      now,
		}
	}
	return e, reqs
}

// BenchmarkDecideLarge measures one decision for a principal in 1,000 roles with 100,000
// assertions loaded, and reports the median and tail of single decisions.
func BenchmarkDecideLarge(b *testing.B) {
	e, reqs := bigWorld(b)
	allowed := 0
	for _, r := range reqs {
		if e.Decide(r).Allowed {
			allowed++
		}
	}
	b.Logf("allowed %d of %d sample requests", allowed, len(reqs))
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		start := time.Now()
		e.Decide(reqs[i%len(reqs)])
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
		i++
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkDecideSmall is the common case: a handful of roles and assertions.
func BenchmarkDecideSmall(b *testing.B) {
	e := newTestEvaluator(b)
	r := Request{Principal: "sports.api", Action: "read", Resource: "sports:scores", Time: t0}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(r)
	}
}

// BenchmarkDecideToken is token mode (roles from an access token).
func BenchmarkDecideToken(b *testing.B) {
	e := newTestEvaluator(b)
	r := Request{TokenDomain: "sports", Roles: []string{"readers", "writers"}, Action: "write", Resource: "sports:scores", Time: t0}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(r)
	}
}
