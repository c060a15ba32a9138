package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// CompileOptions tunes Compile. The zero value is the default.
type CompileOptions struct {
	// Mapping is stored in the snapshot for Envoy request mapping. Nil: default mapping.
	Mapping *Mapping
	// Revision overrides the content hash as the snapshot's revision. Empty: the hash.
	Revision string
}

// neverExpires is how a membership without expiry is stored.
const neverExpires int64 = 0

// Compile flattens validated domains into a Compiled snapshot: membership is resolved as
// Athenz ZTS resolves it (direct members, "*" and "prefix*" wildcards, groups of any loaded
// domain, and trust delegation: a role with trust B gets the members of B's roles that hold
// an ALLOW "assume_role" assertion on it, globs allowed), systemDisabled members are
// dropped, and member expiry is kept for decision time. Delegation is one level deep, as
// in Athenz, so trust cycles and missing domains cannot loop: a role that trusts a domain
// that is not loaded simply has no members.
//
// Compile expects domains that passed validation (see LoadDir) and refuses only what would
// make the snapshot ambiguous, such as two domains with the same name.
func Compile(domains []*Domain, opts CompileOptions) (*Compiled, error) {
	byName := make(map[string]*Domain, len(domains))
	for _, d := range domains {
		name := strings.ToLower(d.Name)
		if prev, ok := byName[name]; ok {
			return nil, fmt.Errorf("compile: domain %q defined twice (%s and %s)", name, prev.Source, d.Source)
		}
		byName[name] = d
	}
	c := &compiler{domains: byName, groups: collectGroups(domains)}
	out := &Compiled{Domains: make(map[string]*CompiledDomain, len(domains)), Mapping: opts.Mapping}
	// Domains compile independently (trust only reads other domains), so use every core:
	// at a million members this halves the wall time on a two-core machine.
	names := sortedKeys(byName)
	results := make([]*CompiledDomain, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cd := c.domain(name, byName[name])
			cd.encoded = cd.encode()
			results[i] = cd
		}()
	}
	wg.Wait()
	for i, name := range names {
		out.Domains[name] = results[i]
	}
	out.Revision = opts.Revision
	if out.Revision == "" {
		rev, err := contentRevision(out)
		if err != nil {
			return nil, err
		}
		out.Revision = rev
	}
	return out, nil
}

// contentRevision hashes the snapshot's canonical JSON (encoding/json sorts map keys).
func contentRevision(c *Compiled) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("compile: hash snapshot: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// member is one resolved principal or wildcard with its expiry.
type member struct {
	name    string
	expires int64
}

type compiler struct {
	domains map[string]*Domain
	groups  map[string][]member // full group name → enabled members
}

// collectGroups indexes every group of every domain by its lower-case full name.
func collectGroups(domains []*Domain) map[string][]member {
	groups := make(map[string][]member)
	for _, d := range domains {
		for _, g := range d.Groups {
			var ms []member
			for _, gm := range g.GroupMembers {
				if gm.SystemDisabled != 0 {
					continue
				}
				ms = append(ms, member{strings.ToLower(gm.MemberName), expiryNanos(gm.Expiration)})
			}
			groups[strings.ToLower(g.Name)] = ms
		}
	}
	return groups
}

// expiryNanos converts an optional expiration to Unix nanoseconds. An expiration of
// exactly the Unix epoch would read as "never", so it is stored one nanosecond earlier.
func expiryNanos(t *athenz.Timestamp) int64 {
	if t == nil || t.IsZero() {
		return neverExpires
	}
	n := t.UnixNano()
	if n == neverExpires {
		n = -1
	}
	return n
}

// earlier returns the earlier of two expiries, where 0 means never.
func earlier(a, b int64) int64 {
	switch {
	case a == neverExpires:
		return b
	case b == neverExpires:
		return a
	case a < b:
		return a
	}
	return b
}

// later returns the later of two expiries, where 0 means never.
func later(a, b int64) int64 {
	if a == neverExpires || b == neverExpires {
		return neverExpires
	}
	if a > b {
		return a
	}
	return b
}

// shortName strips "<domain>:<kind>." from a full role or policy name.
func shortName(full, kind string) string {
	full = strings.ToLower(full)
	if _, after, ok := strings.Cut(full, ":"+kind+"."); ok {
		return after
	}
	return full
}

func (c *compiler) domain(name string, d *Domain) *CompiledDomain {
	cd := &CompiledDomain{Members: make(map[string]map[string]int64)}
	prefixes := make(map[[2]string]int64)
	add := func(role string, m member) {
		if p, ok := strings.CutSuffix(m.name, "*"); ok {
			key := [2]string{role, p}
			if old, seen := prefixes[key]; seen {
				m.expires = later(old, m.expires)
			}
			prefixes[key] = m.expires
			return
		}
		roles := cd.Members[m.name]
		if roles == nil {
			roles = make(map[string]int64)
			cd.Members[m.name] = roles
		}
		if old, seen := roles[role]; seen {
			m.expires = later(old, m.expires)
		}
		roles[role] = m.expires
	}
	for _, r := range d.Roles {
		role := shortName(r.Name, "role")
		cd.Roles = append(cd.Roles, role)
		var ms []member
		if r.Trust != "" {
			ms = c.trusted(name, role, strings.ToLower(r.Trust))
		} else {
			ms = c.standardMembers(r)
		}
		for _, m := range ms {
			add(role, m)
		}
	}
	sort.Strings(cd.Roles)
	for key, exp := range prefixes {
		cd.Prefixes = append(cd.Prefixes, PrefixMember{Role: key[0], Prefix: key[1], Expires: exp})
	}
	sort.Slice(cd.Prefixes, func(i, j int) bool {
		a, b := cd.Prefixes[i], cd.Prefixes[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		return a.Prefix < b.Prefix
	})
	indexAssertions(cd, d)
	return cd
}

// standardMembers resolves a role's own members: principals, wildcards and the enabled
// members of groups, each group member's expiry capped by the group membership's.
func (c *compiler) standardMembers(r *Role) []member {
	var ms []member
	for _, name := range r.Members {
		ms = append(ms, member{strings.ToLower(name), neverExpires})
	}
	for _, rm := range r.RoleMembers {
		if rm.SystemDisabled != 0 {
			continue
		}
		name := strings.ToLower(rm.MemberName)
		exp := expiryNanos(rm.Expiration)
		if strings.Contains(name, ":group.") {
			for _, gm := range c.groups[name] {
				ms = append(ms, member{gm.name, earlier(exp, gm.expires)})
			}
			continue
		}
		ms = append(ms, member{name, exp})
	}
	return ms
}

// trusted resolves the members of role <domain>:role.<role> delegated to trustDomain: the
// standard members of every trustDomain role named by an ALLOW assume_role assertion whose
// resource matches the delegated role's full name.
func (c *compiler) trusted(domain, role, trustDomain string) []member {
	td, ok := c.domains[trustDomain]
	if !ok || trustDomain == domain {
		return nil
	}
	target := domain + ":role." + role
	var ms []member
	for _, p := range activePolicies(td) {
		for _, a := range p.Assertions {
			if effectOf(a) != Allow || !strings.EqualFold(a.Action, "assume_role") {
				continue
			}
			if !matchGlob(strings.ToLower(a.Resource), target) {
				continue
			}
			granting := shortName(a.Role, "role")
			for _, r := range td.Roles {
				if r.Trust == "" && matchGlob(granting, shortName(r.Name, "role")) {
					ms = append(ms, c.standardMembers(r)...)
				}
			}
		}
	}
	return ms
}

// activePolicies returns a domain's policies that count: those not marked inactive (the
// loader has already dropped inactive versions; domains built in code get the same rule).
func activePolicies(d *Domain) []*Policy {
	if d.Policies == nil || d.Policies.Contents == nil {
		return nil
	}
	var out []*Policy
	for _, p := range d.Policies.Contents.Policies {
		if p.Active == nil || *p.Active {
			out = append(out, p)
		}
	}
	return out
}

func effectOf(a *Assertion) Effect {
	if strings.EqualFold(string(a.Effect), string(Deny)) {
		return Deny
	}
	return Allow
}

// indexAssertions numbers the active assertions (policies by name, assertions in order)
// and files each under its action and resource.
func indexAssertions(cd *CompiledDomain, d *Domain) {
	policies := activePolicies(d)
	sort.SliceStable(policies, func(i, j int) bool {
		return strings.ToLower(policies[i].Name) < strings.ToLower(policies[j].Name)
	})
	id := 0
	for _, p := range policies {
		for _, a := range p.Assertions {
			ca := &CompiledAssertion{
				ID:       id,
				Policy:   shortName(p.Name, "policy"),
				Role:     shortName(a.Role, "role"),
				Action:   strings.ToLower(a.Action),
				Resource: strings.ToLower(a.Resource),
				Effect:   effectOf(a),
			}
			id++
			if hasGlob(ca.Role) {
				ca.RoleRe = globRegexp(ca.Role)
			}
			if hasGlob(ca.Resource) {
				ca.ResourceRe = globRegexp(ca.Resource)
			}
			if hasGlob(ca.Action) {
				ca.ActionRe = globRegexp(ca.Action)
				cd.GlobActions = append(cd.GlobActions, ca)
				continue
			}
			if cd.Actions == nil {
				cd.Actions = make(map[string]*ActionIndex)
			}
			ai := cd.Actions[ca.Action]
			if ai == nil {
				ai = &ActionIndex{}
				cd.Actions[ca.Action] = ai
			}
			if ca.ResourceRe != "" {
				ai.Globs = append(ai.Globs, ca)
				continue
			}
			if ai.Exact == nil {
				ai.Exact = make(map[string][]*CompiledAssertion)
			}
			ai.Exact[ca.Resource] = append(ai.Exact[ca.Resource], ca)
		}
	}
}
