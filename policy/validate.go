package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// spot is where a decoded value came from (1-based; zero when unknown).
type spot struct {
	line, col int
	// bad is set when the decoder already reported the value (wrong type).
	bad bool
}

// fieldKey names one decoded value: field of the model object obj (a pointer), or its
// element index of a list field; field "" is the object itself.
type fieldKey struct {
	obj   any
	field string
	index int
}

// positions maps decoded values to where they came from. A nil positions is valid and
// knows nothing (for domains built in code).
type positions map[fieldKey]spot

// at returns the position of obj's field (element index), falling back to the field as
// a whole, then to obj itself.
func (p positions) at(obj any, field string, index int) spot {
	if s, ok := p[fieldKey{obj, field, index}]; ok {
		return s
	}
	if s, ok := p[fieldKey{obj, field, -1}]; ok {
		return s
	}
	return p[fieldKey{obj, "", -1}]
}

// ValidateDomain checks a domain as the loaders do, reporting every problem as a
// *LoadError with File set to d.Source (and no positions, which only the loaders know).
// It accepts domains before and after normalisation, so a domain returned by ParseDomain
// validates cleanly. The checks:
//   - the domain name, and every role, group, policy and service name, is a valid Athenz
//     name of this domain (not of another one);
//   - no two roles, groups, services or policy versions share a name, and a policy has at
//     most one active version;
//   - role members are valid member names ("*", "dom.*", "prefix*", principals, groups;
//     a group of this domain must be defined in it), group members are principals (no
//     wildcards, no groups), and neither list repeats a name;
//   - a role with trust has no members and trusts another, valid, domain;
//   - assertions have a role of this domain that exists (unless it has * or ? globs, or
//     the domain is PolicyOnly), an action, a "domain:entity" resource, and an effect of
//     ALLOW or DENY in any case, or none;
//   - service public keys are ybase64-encoded PEM public keys with distinct ids;
//   - the expiry limits (serviceCertExpiryMins, roleCertExpiryMins, tokenExpiryMins of
//     the domain, certExpiryMins and tokenExpiryMins of its roles) are not negative.
func ValidateDomain(d *Domain) error {
	if probs := validate(d, nil, d.Source); len(probs) > 0 {
		return &LoadError{Problems: sortProblems(probs)}
	}
	return nil
}

// validator collects the problems of one domain.
type validator struct {
	file string
	pos  positions
	dom  *Domain
	// domOK is false when the domain name is missing or invalid: then names are not
	// compared with it, which would only repeat that problem.
	domOK bool
	// groupNames holds the lower-case full names of the domain's groups.
	groupNames map[string]bool
	probs      []Problem
}

func validate(d *Domain, pos positions, file string) []Problem {
	v := &validator{file: file, pos: pos, dom: d, domOK: athenz.IsDomainName(d.Name)}
	v.domainName()
	v.groups()
	roles := v.roles()
	v.policies(roles)
	v.services()
	v.expiryLimits()
	return v.probs
}

// expiryLimits checks that no expiry limit (minutes; 0 is no limit) is negative.
func (v *validator) expiryLimits() {
	check := func(obj any, field, owner string, m int32) {
		if m < 0 && v.decoded(obj, field, -1) {
			v.report(obj, field, -1, "%s: %s %d is negative: want minutes, or 0 for no limit", owner, field, m)
		}
	}
	owner := fmt.Sprintf("domain %q", v.dom.Name)
	check(v.dom, "serviceCertExpiryMins", owner, v.dom.ServiceCertExpiryMins)
	check(v.dom, "roleCertExpiryMins", owner, v.dom.RoleCertExpiryMins)
	check(v.dom, "tokenExpiryMins", owner, v.dom.TokenExpiryMins)
	for _, r := range v.dom.Roles {
		owner := fmt.Sprintf("role %q", r.Name)
		check(r, "certExpiryMins", owner, r.CertExpiryMins)
		check(r, "tokenExpiryMins", owner, r.TokenExpiryMins)
	}
}

func (v *validator) report(obj any, field string, index int, format string, args ...any) {
	s := v.pos.at(obj, field, index)
	v.probs = append(v.probs, Problem{File: v.file, Line: s.line, Column: s.col, Message: fmt.Sprintf(format, args...)})
}

// decoded reports whether the value was read without a type error; values with one are
// already reported and are not checked again.
func (v *validator) decoded(obj any, field string, index int) bool {
	return !v.pos[fieldKey{obj, field, index}].bad
}

// firstAt describes where obj was first defined, for duplicate messages.
func (v *validator) firstAt(obj any) string {
	if s := v.pos.at(obj, "name", -1); s.line > 0 {
		return fmt.Sprintf(" (first at line %d)", s.line)
	}
	return ""
}

// reason returns the rule a name broke, without the name error's own prefix.
func reason(err error) string {
	if ne, ok := errors.AsType[*athenz.NameError](err); ok {
		return ne.Reason
	}
	return err.Error()
}

func (v *validator) domainName() {
	switch name := v.dom.Name; {
	case name == "":
		if v.decoded(v.dom, "name", -1) {
			v.report(v.dom, "name", -1, "domain has no name")
		}
	case !athenz.IsDomainName(name):
		v.report(v.dom, "name", -1, "invalid domain name %q: %s", name, reason(athenz.ValidateDomainName(name)))
	}
}

// fullName checks the name of a role, group or policy: "<this domain>:<kind>.<entity>".
func (v *validator) fullName(obj any, kind, name string, split func(string) (string, string, bool)) bool {
	if name == "" {
		if v.decoded(obj, "name", -1) {
			v.report(obj, "name", -1, "%s has no name", kind)
		}
		return false
	}
	dom, _, ok := split(name)
	if !ok {
		v.report(obj, "name", -1, "invalid %s name %q: want \"%s:%s.<name>\"", kind, name, v.dom.Name, kind)
		return false
	}
	if err := athenz.ValidateResourceName(name); err != nil {
		v.report(obj, "name", -1, "invalid %s name %q: %s", kind, name, reason(err))
		return false
	}
	if v.domOK && !strings.EqualFold(dom, v.dom.Name) {
		v.report(obj, "name", -1, "%s %q belongs to domain %q, not %q", kind, name, dom, v.dom.Name)
		return false
	}
	return true
}

// roles checks the roles and returns the set of their lower-case full names.
func (v *validator) roles() map[string]bool {
	seen := make(map[string]*Role, len(v.dom.Roles))
	for _, r := range v.dom.Roles {
		if v.fullName(r, "role", r.Name, athenz.SplitRoleName) {
			key := strings.ToLower(r.Name)
			if first, dup := seen[key]; dup {
				v.report(r, "name", -1, "role %q is defined twice%s", r.Name, v.firstAt(first))
			} else {
				seen[key] = r
			}
		}
		v.trust(r)
		v.roleMembers(r)
	}
	names := make(map[string]bool, len(seen))
	for key := range seen {
		names[key] = true
	}
	return names
}

func (v *validator) trust(r *Role) {
	if r.Trust == "" {
		return
	}
	switch {
	case !athenz.IsDomainName(r.Trust):
		v.report(r, "trust", -1, "role %q: invalid trust domain %q: %s", r.Name, r.Trust, reason(athenz.ValidateDomainName(r.Trust)))
	case v.domOK && strings.EqualFold(r.Trust, v.dom.Name):
		v.report(r, "trust", -1, "role %q trusts its own domain %q: trust names the other domain that holds the members", r.Name, r.Trust)
	}
	if len(r.Members) > 0 || len(r.RoleMembers) > 0 {
		v.report(r, "trust", -1, "role %q has both trust and members: a delegated role gets its members from domain %q", r.Name, r.Trust)
	}
}

// roleMembers checks member names and repeats. A name may appear both in the plain
// members list and in roleMembers (older ZMS versions filled both); normalisation keeps
// one.
func (v *validator) roleMembers(r *Role) {
	plain := make(map[string]bool, len(r.Members))
	for i, name := range r.Members {
		if v.memberName(r, "members", i, r, name) {
			key := strings.ToLower(name)
			if plain[key] {
				v.report(r, "members", i, "role %q: member %q is listed twice", r.Name, name)
			}
			plain[key] = true
		}
	}
	seen := make(map[string]bool, len(r.RoleMembers))
	for _, m := range r.RoleMembers {
		if v.memberName(m, "memberName", -1, r, m.MemberName) {
			key := strings.ToLower(m.MemberName)
			if seen[key] {
				v.report(m, "memberName", -1, "role %q: member %q is listed twice", r.Name, m.MemberName)
			}
			seen[key] = true
		}
	}
}

func (v *validator) memberName(obj any, field string, index int, r *Role, name string) bool {
	dom, _, isGroup := athenz.SplitGroupName(name)
	switch {
	case name == "":
		if v.decoded(obj, field, index) {
			v.report(obj, field, index, "role %q: member without a name", r.Name)
		}
		return false
	case !athenz.IsMemberName(name):
		v.report(obj, field, index, "role %q: invalid member name %q: %s", r.Name, name, reason(athenz.ValidateMemberName(name)))
		return false
	case isGroup && v.domOK && strings.EqualFold(dom, v.dom.Name) && !v.groupNames[strings.ToLower(name)]:
		v.report(obj, field, index, "role %q: member group %q is not defined in this domain", r.Name, name)
	}
	return true
}

// groups checks the groups and records their names for role member checks.
func (v *validator) groups() {
	seen := make(map[string]*Group, len(v.dom.Groups))
	v.groupNames = make(map[string]bool, len(v.dom.Groups))
	for _, g := range v.dom.Groups {
		if v.fullName(g, "group", g.Name, athenz.SplitGroupName) {
			key := strings.ToLower(g.Name)
			if first, dup := seen[key]; dup {
				v.report(g, "name", -1, "group %q is defined twice%s", g.Name, v.firstAt(first))
			} else {
				seen[key] = g
				v.groupNames[key] = true
			}
		}
		members := make(map[string]bool, len(g.GroupMembers))
		for _, m := range g.GroupMembers {
			name := m.MemberName
			switch {
			case name == "":
				if v.decoded(m, "memberName", -1) {
					v.report(m, "memberName", -1, "group %q: member without a name", g.Name)
				}
			case strings.Contains(name, "*"):
				v.report(m, "memberName", -1, "group %q: member %q: groups cannot have wildcard members", g.Name, name)
			case strings.Contains(name, ":"):
				v.report(m, "memberName", -1, "group %q: member %q: groups cannot contain groups or other resources, only principals", g.Name, name)
			case !athenz.IsGroupMemberName(name):
				v.report(m, "memberName", -1, "group %q: invalid member name %q: %s", g.Name, name, reason(athenz.ValidateGroupMemberName(name)))
			case members[strings.ToLower(name)]:
				v.report(m, "memberName", -1, "group %q: member %q is listed twice", g.Name, name)
			default:
				members[strings.ToLower(name)] = true
			}
		}
	}
}

func (v *validator) services() {
	seen := make(map[string]*Service, len(v.dom.Services))
	prefix := strings.ToLower(v.dom.Name) + "."
	for _, s := range v.dom.Services {
		switch name := s.Name; {
		case name == "":
			if v.decoded(s, "name", -1) {
				v.report(s, "name", -1, "service has no name")
			}
		case !athenz.IsServiceName(name):
			v.report(s, "name", -1, "invalid service name %q: %s", name, reason(athenz.ValidateServiceName(name)))
		case v.domOK && (!strings.HasPrefix(strings.ToLower(name), prefix) || strings.Contains(name[len(prefix):], ".")):
			v.report(s, "name", -1, "service %q is not a service of domain %q: want \"%s<service>\"", name, v.dom.Name, prefix)
		case seen[strings.ToLower(name)] != nil:
			v.report(s, "name", -1, "service %q is defined twice%s", name, v.firstAt(seen[strings.ToLower(name)]))
		default:
			seen[strings.ToLower(name)] = s
		}
		ids := make(map[string]bool, len(s.PublicKeys))
		for _, k := range s.PublicKeys {
			switch {
			case k.ID == "" && v.decoded(k, "id", -1):
				v.report(k, "id", -1, "service %q: public key without an id", s.Name)
			case ids[k.ID]:
				v.report(k, "id", -1, "service %q: public key id %q is used twice", s.Name, k.ID)
			}
			ids[k.ID] = true
			if !v.decoded(k, "key", -1) {
				continue
			}
			if k.Key == "" {
				v.report(k, "key", -1, "service %q: public key %q has no key", s.Name, k.ID)
			} else if _, err := athenz.DecodePublicKeyEntry(k.Key); err != nil {
				v.report(k, "key", -1, "service %q: public key %q is not a ybase64-encoded PEM public key: %v", s.Name, k.ID, err)
			}
		}
	}
}

// policyVersions tracks the versions of one policy name.
type policyVersions struct {
	versions map[string]*Policy // lower-case version ("" for none) → first definition
	active   *Policy
}

// isActive reports whether a policy entry counts: ZMS skips an entry only when its
// active field is explicitly false.
func isActive(p *Policy) bool { return p.Active == nil || *p.Active }

func (v *validator) policies(roles map[string]bool) {
	if v.dom.Policies == nil || v.dom.Policies.Contents == nil {
		return
	}
	dp := v.dom.Policies.Contents
	if v.domOK && dp.Domain != "" && !strings.EqualFold(dp.Domain, v.dom.Name) {
		v.report(dp, "domain", -1, "policies are for domain %q, not %q", dp.Domain, v.dom.Name)
	}
	byName := make(map[string]*policyVersions, len(dp.Policies))
	for _, p := range dp.Policies {
		for _, a := range p.Assertions {
			v.assertion(p, a, roles)
		}
		if !v.fullName(p, "policy", p.Name, athenz.SplitPolicyName) {
			continue
		}
		if p.Version != "" && !athenz.IsSimpleName(p.Version) {
			v.report(p, "version", -1, "policy %q: invalid version %q: %s", p.Name, p.Version, reason(athenz.ValidateSimpleName(p.Version)))
		}
		pv := byName[strings.ToLower(p.Name)]
		if pv == nil {
			pv = &policyVersions{versions: make(map[string]*Policy)}
			byName[strings.ToLower(p.Name)] = pv
		}
		version := strings.ToLower(p.Version)
		if first, dup := pv.versions[version]; dup {
			if version == "" {
				v.report(p, "name", -1, "policy %q is defined twice%s", p.Name, v.firstAt(first))
			} else {
				v.report(p, "version", -1, "policy %q version %q is defined twice%s", p.Name, p.Version, v.firstAt(first))
			}
			continue
		}
		pv.versions[version] = p
		if !isActive(p) {
			continue
		}
		if pv.active != nil {
			v.report(p, "name", -1, "policy %q has more than one active version: %q and %q", p.Name, pv.active.Version, p.Version)
			continue
		}
		pv.active = p
	}
}

// globToName stands in a name character for each glob, so that a role pattern can be
// checked against the role name rules.
var globToName = strings.NewReplacer("*", "x", "?", "x")

func (v *validator) assertion(p *Policy, a *Assertion, roles map[string]bool) {
	v.assertionRole(p, a, roles)
	if a.Action == "" && v.decoded(a, "action", -1) {
		v.report(a, "action", -1, "policy %q: assertion has no action", p.Name)
	}
	if a.Resource == "" {
		if v.decoded(a, "resource", -1) {
			v.report(a, "resource", -1, "policy %q: assertion has no resource", p.Name)
		}
	} else if _, _, ok := athenz.SplitResource(a.Resource); !ok {
		v.report(a, "resource", -1, "policy %q: assertion resource %q: want \"<domain>:<entity>\"", p.Name, a.Resource)
	}
	switch strings.ToUpper(string(a.Effect)) {
	case "", string(Allow), string(Deny):
	default:
		v.report(a, "effect", -1, "policy %q: assertion effect %q: want ALLOW or DENY", p.Name, a.Effect)
	}
}

func (v *validator) assertionRole(p *Policy, a *Assertion, roles map[string]bool) {
	if a.Role == "" {
		if v.decoded(a, "role", -1) {
			v.report(a, "role", -1, "policy %q: assertion has no role", p.Name)
		}
		return
	}
	dom, role, ok := athenz.SplitRoleName(a.Role)
	switch {
	case !ok:
		v.report(a, "role", -1, "policy %q: assertion role %q: want \"%s:role.<name>\"", p.Name, a.Role, v.dom.Name)
	case v.domOK && !strings.EqualFold(dom, v.dom.Name):
		v.report(a, "role", -1, "policy %q: assertion role %q belongs to domain %q, not %q", p.Name, a.Role, dom, v.dom.Name)
	case hasGlob(role):
		if !athenz.IsEntityName(globToName.Replace(role)) {
			v.report(a, "role", -1, "policy %q: assertion role %q: %q is not a role name pattern (dot-separated name parts, with * and ? globs)", p.Name, a.Role, role)
		}
	case !athenz.IsResourceName(a.Role):
		v.report(a, "role", -1, "policy %q: invalid assertion role %q: %s", p.Name, a.Role, reason(athenz.ValidateResourceName(a.Role)))
	case !v.dom.PolicyOnly && !roles[strings.ToLower(a.Role)]:
		v.report(a, "role", -1, "policy %q: assertion role %q is not defined in this domain", p.Name, a.Role)
	}
}

// normalize brings a validated domain to the form later stages rely on; see ParseDomain.
func normalize(d *Domain) {
	lower := strings.ToLower
	d.Name = lower(d.Name)
	for _, r := range d.Roles {
		r.Name, r.Trust = lower(r.Name), lower(r.Trust)
		merged := make([]*RoleMember, 0, len(r.Members)+len(r.RoleMembers))
		seen := make(map[string]bool, cap(merged))
		for _, m := range r.RoleMembers {
			m.MemberName = lower(m.MemberName)
			seen[m.MemberName] = true
			merged = append(merged, m)
		}
		for _, name := range r.Members {
			if name = lower(name); !seen[name] {
				seen[name] = true
				merged = append(merged, &RoleMember{MemberName: name})
			}
		}
		if len(merged) == 0 {
			merged = nil
		}
		r.Members, r.RoleMembers = nil, merged
	}
	for _, g := range d.Groups {
		g.Name = lower(g.Name)
		for _, m := range g.GroupMembers {
			m.MemberName = lower(m.MemberName)
		}
	}
	for _, s := range d.Services {
		s.Name = lower(s.Name)
	}
	if d.Policies == nil || d.Policies.Contents == nil {
		return
	}
	dp := d.Policies.Contents
	dp.Domain = d.Name
	active := dp.Policies[:0]
	for _, p := range dp.Policies {
		if !isActive(p) {
			continue
		}
		p.Name = lower(p.Name)
		for _, a := range p.Assertions {
			a.Role = lower(a.Role)
			a.Effect = Effect(strings.ToUpper(string(a.Effect)))
			if a.Effect == "" {
				a.Effect = Allow
			}
		}
		active = append(active, p)
	}
	clear(dp.Policies[len(active):])
	dp.Policies = active
}
