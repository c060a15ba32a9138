package policy

import (
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

var (
	t0     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	future = athenz.NewTimestamp(t0.Add(24 * time.Hour))
	past   = athenz.NewTimestamp(t0.Add(-time.Hour))
)

func role(name string, members ...*RoleMember) *Role {
	return &Role{Name: name, RoleMembers: members}
}

func rm(name string) *RoleMember { return &RoleMember{MemberName: name} }

func rmExp(name string, exp athenz.Timestamp) *RoleMember {
	return &RoleMember{MemberName: name, Expiration: &exp}
}

func assertion(role, action, resource string, effect Effect) *Assertion {
	return &Assertion{Role: role, Action: action, Resource: resource, Effect: effect}
}

func policies(domain string, ps ...*Policy) *SignedPolicies {
	return &SignedPolicies{Contents: &DomainPolicies{Domain: domain, Policies: ps}}
}

// testDomains is a small world exercising every membership rule.
func testDomains() []*Domain {
	yes, no := true, false
	return []*Domain{
		{
			Name: "sports",
			Roles: []*Role{
				role("sports:role.readers", rm("sports.api"), rm("user.jane"), rmExp("user.old", past), rmExp("user.temp", future),
					&RoleMember{MemberName: "user.disabled", SystemDisabled: 1}, rm("sports:group.ops")),
				role("sports:role.writers", rm("sports.api")),
				role("sports:role.partners", rm("partner.*")),
				role("sports:role.banned", rm("sports.api"), rm("user.jane")),
				role("sports:role.ci", rm("ci.bot*")),
				{Name: "sports:role.delegated", Trust: "media"},
				{Name: "sports:role.ghost", Trust: "missing"},
				role("sports:role.expired-group", rmExp("sports:group.ops", past)),
			},
			Groups: []*Group{{Name: "sports:group.ops", GroupMembers: []*GroupMember{
				{MemberName: "user.opsie"},
				{MemberName: "user.gone", Expiration: &past},
			}}},
			Policies: policies("sports",
				&Policy{Name: "sports:policy.read", Assertions: []*Assertion{
					assertion("sports:role.readers", "read", "sports:scores", ""),
					assertion("sports:role.readers", "read", "sports:news/*", Allow),
					assertion("sports:role.partners", "read", "sports:feeds/?", Allow),
					assertion("sports:role.ci", "deploy", "sports:svc.*", Allow),
					assertion("sports:role.delegated", "read", "sports:shared", Allow),
					assertion("sports:role.expired-group", "read", "sports:ops", Allow),
				}},
				&Policy{Name: "sports:policy.write", Assertions: []*Assertion{
					assertion("sports:role.writers", "*", "sports:scores", Allow),
					assertion("sports:role.banned", "write", "sports:scores", Deny),
					assertion("sports:role.wri*", "admin", "sports:config", Allow),
				}},
				&Policy{Name: "sports:policy.old", Version: "v1", Active: &no, Assertions: []*Assertion{
					assertion("sports:role.readers", "delete", "sports:scores", Allow),
				}},
				&Policy{Name: "sports:policy.current", Version: "v2", Active: &yes, Assertions: []*Assertion{
					assertion("sports:role.readers", "list", "sports:scores", Allow),
				}},
			),
		},
		{
			Name:  "open",
			Roles: []*Role{role("open:role.everyone", rm("*"))},
			Policies: policies("open", &Policy{Name: "open:policy.ping", Assertions: []*Assertion{
				assertion("open:role.everyone", "ping", "open:health", Allow),
			}}),
		},
		{
			Name: "media",
			Roles: []*Role{
				role("media:role.editors", rm("media.cms"), rmExp("user.contractor", future)),
				role("media:role.viewers", rm("media.viewer")),
				{Name: "media:role.loop", Trust: "sports"},
			},
			Policies: policies("media", &Policy{Name: "media:policy.delegate", Assertions: []*Assertion{
				assertion("media:role.editors", "assume_role", "sports:role.deleg*", Allow),
				assertion("media:role.viewers", "assume_role", "sports:role.delegated", Deny),
				assertion("media:role.viewers", "assume_rolex", "sports:role.delegated", Allow),
			}}),
		},
	}
}

func newTestEvaluator(t testing.TB) *Evaluator {
	t.Helper()
	c, err := Compile(testDomains(), CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvaluator(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecide(t *testing.T) {
	e := newTestEvaluator(t)
	tests := []struct {
		name       string
		req        Request
		allowed    bool
		reason     Reason
		match      string // policy/role/action/resource of the deciding assertion, "" for none
		validUntil time.Time
	}{
		{"direct member allowed", Request{Principal: "sports.api", Action: "read", Resource: "sports:scores"}, true, ReasonAllowed, "read/readers/read/sports:scores", time.Time{}},
		{"case insensitive", Request{Principal: "Sports.API", Action: "READ", Resource: "SPORTS:Scores"}, true, ReasonAllowed, "read/readers/read/sports:scores", time.Time{}},
		{"resource glob", Request{Principal: "user.jane", Action: "read", Resource: "sports:news/2026/03"}, true, ReasonAllowed, "read/readers/read/sports:news/*", time.Time{}},
		{"resource glob anchored", Request{Principal: "user.jane", Action: "read", Resource: "sports:old/news/x"}, false, ReasonNoMatch, "", time.Time{}},
		{"star member", Request{Principal: "anyone.at.all", Action: "ping", Resource: "open:health"}, true, ReasonAllowed, "ping/everyone/ping/open:health", time.Time{}},
		{"prefix member with dot", Request{Principal: "partner.acme", Action: "read", Resource: "sports:feeds/1"}, true, ReasonAllowed, "read/partners/read/sports:feeds/?", time.Time{}},
		{"question mark one char", Request{Principal: "partner.acme", Action: "read", Resource: "sports:feeds/12"}, false, ReasonNoMatch, "", time.Time{}},
		{"prefix member without dot", Request{Principal: "ci.bot42", Action: "deploy", Resource: "sports:svc.web"}, true, ReasonAllowed, "read/ci/deploy/sports:svc.*", time.Time{}},
		{"prefix is not substring", Request{Principal: "xci.bot", Action: "deploy", Resource: "sports:svc.web"}, false, ReasonNotMember, "", time.Time{}},
		{"expiring member before expiry", Request{Principal: "user.temp", Action: "read", Resource: "sports:scores"}, true, ReasonAllowed, "read/readers/read/sports:scores", future.Time},
		{"expired member", Request{Principal: "user.old", Action: "read", Resource: "sports:scores"}, false, ReasonMemberExpired, "", time.Time{}},
		{"expiry instant still counts", Request{Principal: "user.temp", Action: "read", Resource: "sports:scores", Time: future.Time}, true, ReasonAllowed, "read/readers/read/sports:scores", future.Time},
		{"one ns after expiry", Request{Principal: "user.temp", Action: "read", Resource: "sports:scores", Time: future.Add(time.Nanosecond)}, false, ReasonMemberExpired, "", time.Time{}},
		{"system disabled member", Request{Principal: "user.disabled", Action: "read", Resource: "sports:scores"}, false, ReasonNotMember, "", time.Time{}},
		{"group member", Request{Principal: "user.opsie", Action: "read", Resource: "sports:scores"}, true, ReasonAllowed, "read/readers/read/sports:scores", time.Time{}},
		{"expired group member", Request{Principal: "user.gone", Action: "read", Resource: "sports:scores"}, false, ReasonMemberExpired, "", time.Time{}},
		{"expired group membership of role", Request{Principal: "user.opsie", Action: "read", Resource: "sports:ops"}, false, ReasonNoMatch, "", time.Time{}},
		{"deny beats allow", Request{Principal: "sports.api", Action: "write", Resource: "sports:scores"}, false, ReasonDenied, "write/banned/write/sports:scores", time.Time{}},
		{"glob action allow", Request{Principal: "sports.api", Action: "update", Resource: "sports:scores"}, true, ReasonAllowed, "write/writers/*/sports:scores", time.Time{}},
		{"role glob assertion", Request{Principal: "sports.api", Action: "admin", Resource: "sports:config"}, true, ReasonAllowed, "write/wri*/admin/sports:config", time.Time{}},
		{"inactive version ignored", Request{Principal: "user.jane", Action: "delete", Resource: "sports:scores"}, false, ReasonNoMatch, "", time.Time{}},
		{"active version counts", Request{Principal: "sports.api", Action: "list", Resource: "sports:scores"}, true, ReasonAllowed, "current/readers/list/sports:scores", time.Time{}},
		{"trust delegation with glob", Request{Principal: "media.cms", Action: "read", Resource: "sports:shared"}, true, ReasonAllowed, "read/delegated/read/sports:shared", time.Time{}},
		{"trust keeps member expiry", Request{Principal: "user.contractor", Action: "read", Resource: "sports:shared"}, true, ReasonAllowed, "read/delegated/read/sports:shared", future.Time},
		{"trust deny assume_role ignored", Request{Principal: "media.viewer", Action: "read", Resource: "sports:shared"}, false, ReasonNotMember, "", time.Time{}},
		{"trust to missing domain", Request{Principal: "user.nobody", Action: "read", Resource: "sports:shared"}, false, ReasonNotMember, "", time.Time{}},
		{"trust cycle resolves", Request{Principal: "sports.api", Action: "read", Resource: "media:x"}, false, ReasonNotMember, "", time.Time{}},
		{"not a member", Request{Principal: "user.stranger", Action: "read", Resource: "sports:scores"}, false, ReasonNotMember, "", time.Time{}},
		{"unknown domain", Request{Principal: "sports.api", Action: "read", Resource: "weather:today"}, false, ReasonUnknownDomain, "", time.Time{}},
		{"resource without domain", Request{Principal: "sports.api", Action: "read", Resource: "scores"}, false, ReasonInvalid, "", time.Time{}},
		{"empty action", Request{Principal: "sports.api", Resource: "sports:scores"}, false, ReasonInvalid, "", time.Time{}},
		{"empty principal", Request{Action: "read", Resource: "sports:scores"}, false, ReasonInvalid, "", time.Time{}},
		{"token mode allowed", Request{TokenDomain: "sports", Roles: []string{"Readers"}, Action: "read", Resource: "sports:scores"}, true, ReasonAllowed, "read/readers/read/sports:scores", time.Time{}},
		{"token mode deny role", Request{TokenDomain: "sports", Roles: []string{"writers", "banned"}, Action: "write", Resource: "sports:scores"}, false, ReasonDenied, "write/banned/write/sports:scores", time.Time{}},
		{"token mode no roles", Request{TokenDomain: "sports", Action: "read", Resource: "sports:scores"}, false, ReasonNotMember, "", time.Time{}},
		{"token mode unmatched role", Request{TokenDomain: "sports", Roles: []string{"nope"}, Action: "read", Resource: "sports:scores"}, false, ReasonNoMatch, "", time.Time{}},
		{"token domain mismatch", Request{TokenDomain: "media", Roles: []string{"readers"}, Action: "read", Resource: "sports:scores"}, false, ReasonDomainMismatch, "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Time.IsZero() {
				tt.req.Time = t0
			}
			d := e.Decide(tt.req)
			if d.Allowed != tt.allowed || d.Reason != tt.reason {
				t.Fatalf("Decide = %v/%s, want %v/%s", d.Allowed, d.Reason, tt.allowed, tt.reason)
			}
			if got := matchString(d.Match); got != tt.match {
				t.Errorf("match = %q, want %q", got, tt.match)
			}
			if !d.ValidUntil.Equal(tt.validUntil) {
				t.Errorf("ValidUntil = %v, want %v", d.ValidUntil, tt.validUntil)
			}
		})
	}
}

func TestExplainListsRolesAndMatches(t *testing.T) {
	e := newTestEvaluator(t)
	x := e.Explain(Request{Principal: "sports.api", Action: "write", Resource: "sports:scores", Time: t0})
	if x.Allowed || x.Reason != ReasonDenied {
		t.Fatalf("got %v/%s, want deny", x.Allowed, x.Reason)
	}
	var ids []int
	for _, m := range x.Matches {
		ids = append(ids, m.ID)
	}
	if len(x.Matches) != 2 || matchString(x.Matches[0]) != "write/writers/*/sports:scores" || matchString(x.Matches[1]) != "write/banned/write/sports:scores" {
		t.Errorf("matches = %v, want the allow by glob action, then the deny", ids)
	}
	want := map[string]bool{"banned": true, "readers": true, "writers": true}
	for _, h := range x.Roles {
		if !want[h.Role] {
			t.Errorf("unexpected role %+v", h)
		}
		delete(want, h.Role)
	}
	if len(want) > 0 {
		t.Errorf("roles missing from explanation: %v", want)
	}
	if got := e.RolesOf("sports", "user.temp", t0); len(got) != 1 || got[0] != "readers" {
		t.Errorf("RolesOf(user.temp) = %v, want [readers]", got)
	}
	if got := e.RolesOf("sports", "user.old", t0); len(got) != 0 {
		t.Errorf("RolesOf(user.old) = %v, want none (readers expired)", got)
	}
	if got := e.RolesOf("open", "user.old", t0); len(got) != 1 || got[0] != "everyone" {
		t.Errorf("RolesOf(open, user.old) = %v, want [everyone]", got)
	}
}

func TestCompileRefusesDuplicateDomains(t *testing.T) {
	_, err := Compile([]*Domain{{Name: "a", Source: "x.yaml"}, {Name: "A", Source: "y.yaml"}}, CompileOptions{})
	if err == nil {
		t.Fatal("Compile accepted two domains named a")
	}
}

func TestCompileRevisionIsStable(t *testing.T) {
	a, err := Compile(testDomains(), CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(testDomains(), CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision != b.Revision || a.Revision == "" {
		t.Fatalf("revisions %q and %q differ for the same input", a.Revision, b.Revision)
	}
	ds := testDomains()
	ds[0].Roles[1].RoleMembers = append(ds[0].Roles[1].RoleMembers, rm("user.new"))
	c, err := Compile(ds, CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Revision == a.Revision {
		t.Fatal("revision did not change when a member was added")
	}
}

func matchString(a *CompiledAssertion) string {
	if a == nil {
		return ""
	}
	return a.Policy + "/" + a.Role + "/" + a.Action + "/" + a.Resource
}

// After ReleaseMembers the evaluator must decide exactly as before: it keeps its own
// membership index.
func TestReleaseMembersKeepsDecisions(t *testing.T) {
	c, err := Compile(testDomains(), CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEvaluator(c)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []Request{
		{Principal: "sports.api", Action: "read", Resource: "sports:scores", Time: t0},
		{Principal: "user.temp", Action: "read", Resource: "sports:scores", Time: t0},
		{Principal: "user.old", Action: "read", Resource: "sports:scores", Time: t0},
		{Principal: "sports.api", Action: "write", Resource: "sports:scores", Time: t0},
		{Principal: "media.cms", Action: "read", Resource: "sports:shared", Time: t0},
	}
	var before []Decision
	for _, r := range reqs {
		before = append(before, e.Decide(r))
	}
	c.ReleaseMembers()
	for _, cd := range c.Domains {
		if cd.Members != nil {
			t.Fatal("ReleaseMembers left a membership map")
		}
	}
	for i, r := range reqs {
		if got := e.Decide(r); got != before[i] {
			t.Errorf("%+v: after ReleaseMembers %+v, before %+v", r, got, before[i])
		}
	}
}
