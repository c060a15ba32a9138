package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Evaluator answers Requests from a Compiled snapshot. It is built once per snapshot
// (NewEvaluator indexes everything) and is safe for concurrent use. Decide does not scan
// assertions: it looks up the assertions filed under the request's action and resource,
// plus the glob entries, and checks membership by map lookup.
type Evaluator struct {
	compiled *Compiled
	domains  map[string]*domainIndex
}

// domainIndex is a CompiledDomain arranged for the hot path.
type domainIndex struct {
	*CompiledDomain
	// prefixesByRole holds the wildcard members of each role.
	prefixesByRole map[string][]PrefixMember
	// Direct memberships, pointer-free so that a million members cost the garbage
	// collector almost nothing to scan: principals maps a principal to a span of grants
	// (start<<32 | count), and each grant names its role by index into roleNames.
	principals *nameTable
	grants     []grant
	roleIDs    map[string]int32
	roleNames  []string
	// actions indexes the literal actions; globActions groups the glob-action assertions
	// by action pattern, each group indexed by resource like a literal action.
	actions     map[string]*actionIdx
	globActions []globAction
}

// grant is one direct membership: a role (index into roleNames) and its expiry. A
// principal holds each role at most once (Compile merges paths to the same role).
type grant struct {
	role int32
	exp  int64
}

// memberships returns the principal's direct memberships.
func (di *domainIndex) memberships(principal string) []grant {
	span, ok := di.principals.get(principal)
	if !ok {
		return nil
	}
	start, n := span>>32, span&0xffffffff
	return di.grants[start : start+n : start+n]
}

// indexMembers builds the pointer-free membership index from the snapshot's map form.
func (di *domainIndex) indexMembers(members map[string]map[string]int64) {
	di.roleIDs = make(map[string]int32)
	di.principals = newNameTable(len(members))
	total := 0
	for _, roles := range members {
		total += len(roles)
	}
	di.grants = make([]grant, 0, total)
	for p, roles := range members {
		start := len(di.grants)
		for role, exp := range roles {
			id, ok := di.roleIDs[role]
			if !ok {
				id = int32(len(di.roleNames))
				di.roleIDs[role] = id
				di.roleNames = append(di.roleNames, role)
			}
			di.grants = append(di.grants, grant{role: id, exp: exp})
		}
		span := di.grants[start:]
		slices.SortFunc(span, func(a, b grant) int { return int(a.role) - int(b.role) })
		di.principals.set(p, uint64(start)<<32|uint64(len(di.grants)-start))
	}
}

type globAction struct {
	pattern string
	idx     *actionIdx
}

// actionIdx finds the assertions of one action for a resource: exact resources by map,
// trailing-star patterns ("dom:path/*", the common glob) by a map keyed on their literal
// prefix probed only at the prefix lengths that exist, and any other glob by matching.
type actionIdx struct {
	exact      map[string][]*CompiledAssertion
	prefix     map[string][]*CompiledAssertion
	prefixLens []int
	globs      []*CompiledAssertion
}

func (ai *actionIdx) add(a *CompiledAssertion) {
	switch {
	case a.ResourceRe == "":
		if ai.exact == nil {
			ai.exact = make(map[string][]*CompiledAssertion)
		}
		ai.exact[a.Resource] = append(ai.exact[a.Resource], a)
	case strings.IndexAny(a.Resource, "*?") == len(a.Resource)-1 && a.Resource[len(a.Resource)-1] == '*':
		p := a.Resource[:len(a.Resource)-1]
		if ai.prefix == nil {
			ai.prefix = make(map[string][]*CompiledAssertion)
		}
		if _, ok := ai.prefix[p]; !ok && !slices.Contains(ai.prefixLens, len(p)) {
			ai.prefixLens = append(ai.prefixLens, len(p))
			slices.Sort(ai.prefixLens)
		}
		ai.prefix[p] = append(ai.prefix[p], a)
	default:
		ai.globs = append(ai.globs, a)
	}
}

// each calls fn for every assertion of this action whose resource matches resource.
func (ai *actionIdx) each(resource string, fn func(*CompiledAssertion)) {
	for _, a := range ai.exact[resource] {
		fn(a)
	}
	for _, n := range ai.prefixLens {
		if n > len(resource) {
			break
		}
		for _, a := range ai.prefix[resource[:n]] {
			fn(a)
		}
	}
	for _, a := range ai.globs {
		if matchGlob(a.Resource, resource) {
			fn(a)
		}
	}
}

// NewEvaluator indexes a snapshot. The snapshot must not be modified afterwards.
func NewEvaluator(c *Compiled) (*Evaluator, error) {
	if c == nil {
		return nil, fmt.Errorf("new evaluator: nil snapshot")
	}
	e := &Evaluator{compiled: c, domains: make(map[string]*domainIndex, len(c.Domains))}
	for name, cd := range c.Domains {
		if cd == nil {
			return nil, fmt.Errorf("new evaluator: domain %q has no data", name)
		}
		e.domains[name] = indexDomain(cd)
	}
	return e, nil
}

func indexDomain(cd *CompiledDomain) *domainIndex {
	di := &domainIndex{
		CompiledDomain: cd,
		prefixesByRole: make(map[string][]PrefixMember),
		actions:        make(map[string]*actionIdx, len(cd.Actions)),
	}
	for _, p := range cd.Prefixes {
		di.prefixesByRole[p.Role] = append(di.prefixesByRole[p.Role], p)
	}
	di.indexMembers(cd.Members)
	for action, ca := range cd.Actions {
		ai := &actionIdx{}
		for _, list := range ca.Exact {
			for _, a := range list {
				ai.add(a)
			}
		}
		for _, a := range ca.Globs {
			ai.add(a)
		}
		di.actions[action] = ai
	}
	groups := make(map[string]*actionIdx)
	for _, a := range cd.GlobActions {
		ai := groups[a.Action]
		if ai == nil {
			ai = &actionIdx{}
			groups[a.Action] = ai
			di.globActions = append(di.globActions, globAction{pattern: a.Action, idx: ai})
		}
		ai.add(a)
	}
	return di
}

// ReleaseMembers drops the snapshot's per-principal membership maps (the bulk of a large
// snapshot's memory) once every Evaluator that needs them has been built: an Evaluator
// indexes membership into its own compact, pointer-free form and never reads the maps
// again. Afterwards the snapshot no longer describes membership: do not write it as a
// bundle, hash it, or build another Evaluator from it. Meant for processes that only
// decide, such as the authz server, which owns the snapshot it read from a bundle.
func (c *Compiled) ReleaseMembers() {
	for _, cd := range c.Domains {
		if cd != nil {
			cd.Members = nil
			cd.encoded = nil
		}
	}
}

// Revision is the snapshot's revision.
func (e *Evaluator) Revision() string { return e.compiled.Revision }

// Compiled returns the snapshot the evaluator decides from. It must not be modified.
func (e *Evaluator) Compiled() *Compiled { return e.compiled }

// caller is the normalised subject of one decision.
type caller struct {
	dom       *domainIndex
	principal string
	now       int64
	token     bool
	roles     []string // token mode only, lower-case
	member    []grant  // the principal's direct memberships in the domain
}

// holds reports whether the caller holds role at its time, and until when (0: never
// expires). In token mode the credential's roles are held for the whole decision.
func (c *caller) holds(role string) (bool, int64) {
	if c.token {
		for _, r := range c.roles {
			if r == role {
				return true, neverExpires
			}
		}
		return false, 0
	}
	held, until := false, int64(0)
	if id, ok := c.dom.roleIDs[role]; ok && len(c.member) > 0 {
		// Each principal's grants are sorted by role: binary search, since a principal
		// may hold a thousand roles.
		i, found := slices.BinarySearchFunc(c.member, id, func(g grant, id int32) int { return int(g.role) - int(id) })
		if found && valid(c.member[i].exp, c.now) {
			held, until = true, c.member[i].exp
		}
	}
	for _, p := range c.dom.prefixesByRole[role] {
		if strings.HasPrefix(c.principal, p.Prefix) && valid(p.Expires, c.now) {
			if held {
				until = later(until, p.Expires)
			} else {
				held, until = true, p.Expires
			}
		}
	}
	return held, until
}

// holdsMatching reports whether the caller holds a role matching the glob pattern, and
// until when the latest such membership lasts.
func (c *caller) holdsMatching(pattern string) (bool, int64) {
	held, until := false, int64(0)
	note := func(exp int64) {
		if held {
			until = later(until, exp)
		} else {
			held, until = true, exp
		}
	}
	if c.token {
		for _, r := range c.roles {
			if matchGlob(pattern, r) {
				note(neverExpires)
			}
		}
		return held, until
	}
	for _, g := range c.member {
		if valid(g.exp, c.now) && matchGlob(pattern, c.dom.roleNames[g.role]) {
			note(g.exp)
		}
	}
	for _, p := range c.dom.Prefixes {
		if valid(p.Expires, c.now) && strings.HasPrefix(c.principal, p.Prefix) && matchGlob(pattern, p.Role) {
			note(p.Expires)
		}
	}
	return held, until
}

// valid reports whether a membership with expiry exp counts at now: it counts up to and
// including its expiration instant, as in Athenz ZTS.
func valid(exp, now int64) bool { return exp == neverExpires || now <= exp }

// Decide answers r. It never fails: malformed requests are denied with ReasonInvalid.
func (e *Evaluator) Decide(r Request) Decision {
	var d Decision
	e.decide(&r, &d, nil)
	return d
}

// decide fills d; when matches is non-nil it also collects every matching assertion.
func (e *Evaluator) decide(r *Request, d *Decision, matches *[]*CompiledAssertion) {
	action := strings.ToLower(r.Action)
	resource := strings.ToLower(r.Resource)
	domain, _, ok := strings.Cut(resource, ":")
	c := caller{principal: strings.ToLower(r.Principal), token: r.TokenDomain != ""}
	if ok {
		d.Domain = domain
	}
	if action == "" || !ok || domain == "" || (!c.token && c.principal == "") {
		d.Reason = ReasonInvalid
		return
	}
	if c.token && strings.ToLower(r.TokenDomain) != domain {
		d.Reason = ReasonDomainMismatch
		return
	}
	if c.dom = e.domains[domain]; c.dom == nil {
		d.Reason = ReasonUnknownDomain
		return
	}
	if r.Time.IsZero() {
		c.now = time.Now().UnixNano()
	} else {
		c.now = r.Time.UnixNano()
	}
	if c.token {
		c.roles = lowerAll(r.Roles)
	} else {
		c.member = c.dom.memberships(c.principal)
	}

	var deny, allow *CompiledAssertion
	var denyUntil, allowUntil int64
	consider := func(a *CompiledAssertion) {
		var held bool
		var until int64
		if a.RoleRe != "" {
			held, until = c.holdsMatching(a.Role)
		} else {
			held, until = c.holds(a.Role)
		}
		if !held {
			return
		}
		if matches != nil {
			*matches = append(*matches, a)
		}
		if a.Effect == Deny {
			if deny == nil || a.ID < deny.ID {
				deny, denyUntil = a, until
			}
		} else if allow == nil || a.ID < allow.ID {
			allow, allowUntil = a, until
		}
	}
	if ai := c.dom.actions[action]; ai != nil {
		ai.each(resource, consider)
	}
	for _, g := range c.dom.globActions {
		if matchGlob(g.pattern, action) {
			g.idx.each(resource, consider)
		}
	}

	switch {
	case deny != nil:
		d.Reason, d.Match = ReasonDenied, deny
		d.ValidUntil = untilTime(denyUntil)
	case allow != nil:
		d.Allowed, d.Reason, d.Match = true, ReasonAllowed, allow
		d.ValidUntil = untilTime(allowUntil)
	default:
		d.Reason = c.noMatchReason()
	}
}

// noMatchReason tells apart a caller with roles but no matching assertion, one whose
// memberships have all expired, and one that never was a member.
func (c *caller) noMatchReason() Reason {
	if c.token {
		if len(c.roles) > 0 {
			return ReasonNoMatch
		}
		return ReasonNotMember
	}
	expired := false
	for _, g := range c.member {
		if valid(g.exp, c.now) {
			return ReasonNoMatch
		}
		expired = true
	}
	for _, p := range c.dom.Prefixes {
		if strings.HasPrefix(c.principal, p.Prefix) {
			if valid(p.Expires, c.now) {
				return ReasonNoMatch
			}
			expired = true
		}
	}
	if expired {
		return ReasonMemberExpired
	}
	return ReasonNotMember
}

func untilTime(exp int64) time.Time {
	if exp == neverExpires {
		return time.Time{}
	}
	return time.Unix(0, exp).UTC()
}

// lowerAll lower-cases names, reusing the slice when nothing changes.
func lowerAll(names []string) []string {
	for i, n := range names {
		if l := strings.ToLower(n); l != n {
			out := make([]string, len(names))
			copy(out, names[:i])
			for j := i; j < len(names); j++ {
				out[j] = strings.ToLower(names[j])
			}
			return out
		}
	}
	return names
}

// HeldRole is one role the principal holds (or held) in the resource's domain.
type HeldRole struct {
	Role string `json:"role"`
	// Expires is the last instant the membership counts; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Expired is true when the membership had expired at the request time.
	Expired bool `json:"expired,omitempty"`
	// Via is "member", "wildcard:<prefix>" or "token".
	Via string `json:"via"`
}

// Explanation is a Decision with the facts that led to it, for people.
type Explanation struct {
	Decision
	Principal string    `json:"principal,omitempty"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	Time      time.Time `json:"time"`
	// Roles are the roles the caller holds or held in the domain, sorted by name.
	Roles []HeldRole `json:"roles"`
	// Matches are every assertion that matched the request, in ID order.
	Matches []*CompiledAssertion `json:"matches,omitempty"`
}

// Explain decides r like Decide and also reports the roles involved and every matching
// assertion. It is slower than Decide and meant for people and debug endpoints.
func (e *Evaluator) Explain(r Request) Explanation {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	x := Explanation{
		Principal: strings.ToLower(r.Principal),
		Action:    strings.ToLower(r.Action),
		Resource:  strings.ToLower(r.Resource),
		Time:      r.Time.UTC(),
	}
	matches := []*CompiledAssertion{}
	e.decide(&r, &x.Decision, &matches)
	sort.Slice(matches, func(i, j int) bool { return matches[i].ID < matches[j].ID })
	x.Matches = matches
	x.Roles = e.heldRoles(&r, x.Domain)
	return x
}

// heldRoles lists every membership of the caller in domain, current or expired.
func (e *Evaluator) heldRoles(r *Request, domain string) []HeldRole {
	out := []HeldRole{}
	if r.TokenDomain != "" {
		for _, role := range lowerAll(r.Roles) {
			out = append(out, HeldRole{Role: role, Via: "token"})
		}
		return out
	}
	dom := e.domains[domain]
	if dom == nil {
		return out
	}
	now := r.Time.UnixNano()
	principal := strings.ToLower(r.Principal)
	for _, g := range dom.memberships(principal) {
		out = append(out, HeldRole{Role: dom.roleNames[g.role], Expires: untilTime(g.exp), Expired: !valid(g.exp, now), Via: "member"})
	}
	for _, p := range dom.Prefixes {
		if strings.HasPrefix(principal, p.Prefix) {
			out = append(out, HeldRole{Role: p.Role, Expires: untilTime(p.Expires), Expired: !valid(p.Expires, now), Via: "wildcard:" + p.Prefix + "*"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Via < out[j].Via
	})
	return out
}

// RolesOf returns the short names of the roles principal holds in domain at time at
// (zero: now), sorted. Token minting uses it.
func (e *Evaluator) RolesOf(domain, principal string, at time.Time) []string {
	if at.IsZero() {
		at = time.Now()
	}
	var out []string
	for _, h := range e.heldRoles(&Request{Principal: principal, Time: at}, strings.ToLower(domain)) {
		if !h.Expired && (len(out) == 0 || out[len(out)-1] != h.Role) {
			out = append(out, h.Role)
		}
	}
	return out
}
