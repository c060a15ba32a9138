// Package policytest generates random but valid Athenz domains and requests, for the
// differential test between the native evaluator and the Rego policy, and for benchmarks
// at scale. Generation is deterministic for a given seed.
package policytest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Shape sizes a generated world. Zero fields take the documented defaults.
type Shape struct {
	Domains             int // default 3
	RolesPerDomain      int // default 8
	MembersPerRole      int // default 4
	GroupsPerDomain     int // default 2
	MembersPerGroup     int // default 3
	PoliciesPerDomain   int // default 3
	AssertionsPerPolicy int // default 6
	// Principals is the size of the principal pool members are drawn from; small pools
	// make principals share roles. Default 12.
	Principals int
	// Actions and Entities size the action and resource name pools. Default 4 and 6.
	Actions  int
	Entities int
	// Now is the reference time expiries are spread around. Default 2026-01-01.
	Now time.Time
	// Dense, when true, turns off the random features that make a world small and
	// adversarial (globs, wildcards, trust, DENY, expiry), for scale benchmarks where only
	// size matters.
	Dense bool
}

func (s Shape) withDefaults() Shape {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.Domains, 3)
	def(&s.RolesPerDomain, 8)
	def(&s.MembersPerRole, 4)
	def(&s.GroupsPerDomain, 2)
	def(&s.MembersPerGroup, 3)
	def(&s.PoliciesPerDomain, 3)
	def(&s.AssertionsPerPolicy, 6)
	def(&s.Principals, 12)
	def(&s.Actions, 4)
	def(&s.Entities, 6)
	if s.Now.IsZero() {
		s.Now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return s
}

// Generator draws domains and requests from one random stream.
type Generator struct {
	rng   *rand.Rand
	shape Shape
}

// New returns a generator for shape, seeded with seed.
func New(seed uint64, shape Shape) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), shape: shape.withDefaults()}
}

// DomainName returns the name of generated domain i.
func DomainName(i int) string { return fmt.Sprintf("dom%d", i) }

// Principal returns the name of pool principal i: services of the generated domains and
// a few users, so that prefixes like "dom1.*" and "user.*" select some of them.
func Principal(i int, domains int) string {
	if i%4 == 3 {
		return fmt.Sprintf("user.u%d", i)
	}
	return fmt.Sprintf("%s.svc%d", DomainName(i%domains), i)
}

func (g *Generator) pick(n int) int { return g.rng.IntN(n) }

func (g *Generator) chance(p float64) bool { return !g.shape.Dense && g.rng.Float64() < p }

// expiry returns nil (no expiry) most of the time, else a time within a day of Now.
func (g *Generator) expiry() *athenz.Timestamp {
	if !g.chance(0.3) {
		return nil
	}
	ts := athenz.NewTimestamp(g.shape.Now.Add(time.Duration(g.rng.Int64N(int64(48*time.Hour))) - 24*time.Hour))
	return &ts
}

func (g *Generator) principal() string { return Principal(g.pick(g.shape.Principals), g.shape.Domains) }

// Domains generates the world.
func (g *Generator) Domains() []*policy.Domain {
	s := g.shape
	out := make([]*policy.Domain, s.Domains)
	for i := range out {
		out[i] = g.domain(i)
	}
	return out
}

func (g *Generator) domain(i int) *policy.Domain {
	s := g.shape
	name := DomainName(i)
	d := &policy.Domain{Name: name}
	for gi := 0; gi < s.GroupsPerDomain; gi++ {
		grp := &policy.Group{Name: fmt.Sprintf("%s:group.g%d", name, gi)}
		seen := map[string]bool{}
		for m := 0; m < s.MembersPerGroup; m++ {
			p := g.principal()
			if seen[p] {
				continue
			}
			seen[p] = true
			gm := &policy.GroupMember{MemberName: p, Expiration: g.expiry()}
			if g.chance(0.05) {
				gm.SystemDisabled = 1
			}
			grp.GroupMembers = append(grp.GroupMembers, gm)
		}
		d.Groups = append(d.Groups, grp)
	}
	for ri := 0; ri < s.RolesPerDomain; ri++ {
		r := &policy.Role{Name: fmt.Sprintf("%s:role.r%d", name, ri)}
		if s.Domains > 1 && g.chance(0.1) {
			r.Trust = DomainName((i + 1 + g.pick(s.Domains-1)) % s.Domains)
			d.Roles = append(d.Roles, r)
			continue
		}
		seen := map[string]bool{}
		for m := 0; m < s.MembersPerRole; m++ {
			mn := g.memberName(name)
			if seen[mn] {
				continue
			}
			seen[mn] = true
			rmem := &policy.RoleMember{MemberName: mn, Expiration: g.expiry()}
			if g.chance(0.05) {
				rmem.SystemDisabled = 1
			}
			r.RoleMembers = append(r.RoleMembers, rmem)
		}
		d.Roles = append(d.Roles, r)
	}
	var ps []*policy.Policy
	for pi := 0; pi < s.PoliciesPerDomain; pi++ {
		p := &policy.Policy{Name: fmt.Sprintf("%s:policy.p%d", name, pi)}
		for ai := 0; ai < s.AssertionsPerPolicy; ai++ {
			p.Assertions = append(p.Assertions, g.assertion(name))
		}
		ps = append(ps, p)
	}
	d.Policies = &policy.SignedPolicies{Contents: &policy.DomainPolicies{Domain: name, Policies: ps}}
	return d
}

// memberName draws a role member: mostly principals, sometimes a group, a wildcard or a
// prefix.
func (g *Generator) memberName(domain string) string {
	switch {
	case g.chance(0.1) && g.shape.GroupsPerDomain > 0:
		return fmt.Sprintf("%s:group.g%d", DomainName(g.pick(g.shape.Domains)), g.pick(g.shape.GroupsPerDomain))
	case g.chance(0.03):
		return "*"
	case g.chance(0.05):
		return DomainName(g.pick(g.shape.Domains)) + ".*"
	case g.chance(0.04):
		return "user.u1*"
	}
	return g.principal()
}

func (g *Generator) action() string { return fmt.Sprintf("act%d", g.pick(g.shape.Actions)) }

func (g *Generator) entity() string {
	return fmt.Sprintf("res%d/item%d", g.pick(g.shape.Entities), g.pick(3))
}

func (g *Generator) assertion(domain string) *policy.Assertion {
	s := g.shape
	a := &policy.Assertion{
		Role:     fmt.Sprintf("%s:role.r%d", domain, g.pick(s.RolesPerDomain)),
		Action:   g.action(),
		Resource: domain + ":" + g.entity(),
		Effect:   policy.Allow,
	}
	if g.chance(0.15) {
		a.Effect = policy.Deny
	}
	switch {
	case g.chance(0.08):
		a.Action = "*"
	case g.chance(0.08):
		a.Action = "act?"
	}
	switch {
	case g.chance(0.1):
		a.Resource = domain + ":*"
	case g.chance(0.1):
		a.Resource = fmt.Sprintf("%s:res%d/*", domain, g.pick(s.Entities))
	case g.chance(0.05):
		a.Resource = fmt.Sprintf("%s:res?/item%d", domain, g.pick(3))
	}
	if g.chance(0.04) {
		a.Role = domain + ":role.r*"
	}
	if s.Domains > 1 && g.chance(0.15) {
		// Delegate one of another domain's roles to this domain's role.
		other := DomainName(g.pick(s.Domains))
		a.Action = "assume_role"
		a.Effect = policy.Allow
		a.Resource = fmt.Sprintf("%s:role.r%d", other, g.pick(s.RolesPerDomain))
		if g.chance(0.3) {
			a.Resource = other + ":role.*"
		}
	}
	if g.chance(0.05) {
		a.Action = upper(a.Action)
	}
	return a
}

// Requests draws n requests against the generated world: mostly well-formed, some in
// token mode, some aimed at unknown domains or malformed, times spread around Now.
func (g *Generator) Requests(n int) []policy.Request {
	s := g.shape
	out := make([]policy.Request, n)
	for i := range out {
		domain := DomainName(g.pick(s.Domains))
		r := policy.Request{
			Principal: g.principal(),
			Action:    g.action(),
			Resource:  domain + ":" + g.entity(),
			Time:      s.Now.Add(time.Duration(g.rng.Int64N(int64(48*time.Hour))) - 24*time.Hour),
		}
		switch x := g.rng.Float64(); {
		case x < 0.2:
			r.TokenDomain = domain
			if g.rng.Float64() < 0.1 {
				r.TokenDomain = DomainName(g.pick(s.Domains))
			}
			for k := g.pick(3); k > 0; k-- {
				r.Roles = append(r.Roles, fmt.Sprintf("r%d", g.pick(s.RolesPerDomain)))
			}
		case x < 0.23:
			r.Resource = "nodomain:" + g.entity()
		case x < 0.25:
			r.Resource = g.entity()
		case x < 0.27:
			r.Action = "assume_role"
			r.Resource = fmt.Sprintf("%s:role.r%d", domain, g.pick(s.RolesPerDomain))
		case x < 0.3:
			r.Principal = upper(r.Principal)
			r.Resource = upper(r.Resource)
		}
		out[i] = r
	}
	return out
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
