package athenz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// nameValidator pairs a Validate function with its Is counterpart.
type nameValidator struct {
	validate func(string) error
	is       func(string) bool
}

var validators = map[string]nameValidator{
	"simple":      {athenz.ValidateSimpleName, athenz.IsSimpleName},
	"compound":    {athenz.ValidateCompoundName, athenz.IsCompoundName},
	"domain":      {athenz.ValidateDomainName, athenz.IsDomainName},
	"service":     {athenz.ValidateServiceName, athenz.IsServiceName},
	"entity":      {athenz.ValidateEntityName, athenz.IsEntityName},
	"resource":    {athenz.ValidateResourceName, athenz.IsResourceName},
	"group":       {athenz.ValidateGroupName, athenz.IsGroupName},
	"member":      {athenz.ValidateMemberName, athenz.IsMemberName},
	"groupMember": {athenz.ValidateGroupMemberName, athenz.IsGroupMemberName},
}

func TestValidateNames(t *testing.T) {
	long := strings.Repeat("a", athenz.MaxNameLength)
	tests := []struct {
		name  string
		kind  string
		input string
		// wantErr is the exact error text; "" means valid.
		wantErr string
		wantPos int
	}{
		{"simple letters", "simple", "readers", "", 0},
		{"simple underscore start", "simple", "_x-1", "", 0},
		{"simple digit start", "simple", "9lives", "", 0},
		{"simple dash start", "simple", "-x", `simple name "-x": '-' at position 0 cannot start a name part (a part starts with a letter, digit or '_')`, 0},
		{"simple with dot", "simple", "a.b", `simple name "a.b": invalid character '.' at position 1`, 1},
		{"simple empty", "simple", "", `simple name "": must not be empty`, -1},
		{"domain single", "domain", "sports", "", 0},
		{"domain dotted", "domain", "home.joe_doe.sub-1", "", 0},
		{"domain at max length", "domain", long, "", 0},
		{"domain space", "domain", "sp orts", `domain name "sp orts": invalid character ' ' at position 2`, 2},
		{"domain upper case allowed", "domain", "Sports.Prod", "", 0},
		{"domain leading dot", "domain", ".sports", `domain name ".sports": '.' at position 0 follows nothing (empty name part)`, 0},
		{"domain double dot", "domain", "a..b", `domain name "a..b": '.' at position 2 follows nothing (empty name part)`, 2},
		{"domain trailing dot", "domain", "sports.", `domain name "sports.": '.' at position 6 is not followed by a name part`, 6},
		{"domain part starts with dash", "domain", "a.-b", `domain name "a.-b": '-' at position 2 cannot start a name part (a part starts with a letter, digit or '_')`, 2},
		{"domain part ends with dash", "domain", "a-.b-", "", 0},
		{"domain colon", "domain", "a:b", `domain name "a:b": invalid character ':' at position 1`, 1},
		{"domain non-ascii", "domain", "caf\u00e9", `domain name "café": invalid character 'é' at position 3`, 3},
		{"domain invalid utf8", "domain", "a\xffb", `domain name "a\xffb": invalid character byte 0xff at position 1`, 1},
		{"domain nul byte", "domain", "a\x00", `domain name "a\x00": invalid character '\x00' at position 1`, 1},
		{"domain too long", "domain", long + "a", `domain name "` + long[:64] + `...": is 1025 bytes long, more than the limit of 1024`, -1},
		{"service principal", "service", "sports.api", "", 0},
		{"service wildcard", "service", "sports.api*", `service name "sports.api*": invalid character '*' at position 10`, 10},
		{"entity", "entity", "service.api", "", 0},
		{"compound", "compound", "a.b.c", "", 0},
		{"resource domain only", "resource", "sports", "", 0},
		{"resource with entity", "resource", "sports:role.readers", "", 0},
		{"resource trailing colon", "resource", "sports:", `resource name "sports:": empty entity at position 7`, 7},
		{"resource empty domain", "resource", ":x", `resource name ":x": empty domain at position 0`, 0},
		{"resource second colon", "resource", "a:b:c", `resource name "a:b:c": invalid character ':' at position 3`, 3},
		{"resource bad domain", "resource", "sp orts:x", `resource name "sp orts:x": invalid character ' ' at position 2`, 2},
		{"resource glob", "resource", "sports:*", `resource name "sports:*": invalid character '*' at position 7`, 7},
		{"group", "group", "sports:group.admins", "", 0},
		{"group dotted", "group", "a.b:group.c.d", "", 0},
		{"group no colon", "group", "sports", `group name "sports": want ":group." at position 6`, 6},
		{"group role tag", "group", "sports:role.x", `group name "sports:role.x": want ":group." at position 6`, 6},
		{"group empty name", "group", "sports:group.", `group name "sports:group.": empty group at position 13`, 13},
		{"group bad domain first", "group", "s p", `group name "s p": invalid character ' ' at position 1`, 1},
		{"member everyone", "member", "*", "", 0},
		{"member domain wildcard", "member", "sports.*", "", 0},
		{"member prefix wildcard", "member", "sports.api*", "", 0},
		{"member single label wildcard", "member", "user*", "", 0},
		{"member dash before wildcard", "member", "sports-*", "", 0},
		{"member principal", "member", "user.joe", "", 0},
		{"member group", "member", "sports:group.admins", "", 0},
		{"member lone dot wildcard", "member", ".*", `member name ".*": empty domain at position 0`, 0},
		{"member double wildcard", "member", "**", `member name "**": '*' at position 0: a wildcard may only end a member name`, 0},
		{"member inner wildcard", "member", "a*b", `member name "a*b": '*' at position 1: a wildcard may only end a member name`, 1},
		{"member group wildcard", "member", "d:group.g*", `member name "d:group.g*": '*' at position 9: a wildcard may only end a member name`, 9},
		{"member role is not a member", "member", "d:role.r", `member name "d:role.r": want ":group." at position 1`, 1},
		{"member space", "member", "sp orts", `member name "sp orts": invalid character ' ' at position 2`, 2},
		{"member empty", "member", "", `member name "": must not be empty`, -1},
		{"group member principal", "groupMember", "user.joe", "", 0},
		{"group member wildcard", "groupMember", "user.*", `group member name "user.*": invalid character '*' at position 5`, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := validators[tc.kind]
			err := v.validate(tc.input)
			if got := v.is(tc.input); got != (err == nil) {
				t.Errorf("Is = %v but Validate error = %v", got, err)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %q, want error %s", tc.input, tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.wantErr)
			}
			if !errors.Is(err, athenz.ErrInvalidName) {
				t.Errorf("error %v does not wrap ErrInvalidName", err)
			}
			var ne *athenz.NameError
			if !errors.As(err, &ne) {
				t.Fatalf("error %T is not a *NameError", err)
			}
			if ne.Pos != tc.wantPos {
				t.Errorf("Pos = %d, want %d", ne.Pos, tc.wantPos)
			}
		})
	}
}

func TestIsNamesDoNotAllocate(t *testing.T) {
	inputs := []string{"sports.prod.api", "sp orts", "sports:group.admins", "sports.api*", "a..b"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, s := range inputs {
			for _, v := range validators {
				v.is(s)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("Is* functions allocate %.1f times per run, want 0", allocs)
	}
}

func TestSplitNames(t *testing.T) {
	type split func(string) (string, string, bool)
	tests := []struct {
		name      string
		fn        split
		input     string
		wantLeft  string
		wantRight string
		wantOK    bool
	}{
		{"role", athenz.SplitRoleName, "sports:role.readers", "sports", "readers", true},
		{"role dotted", athenz.SplitRoleName, "a.b:role.c.d", "a.b", "c.d", true},
		{"role glob kept", athenz.SplitRoleName, "*:role.r*", "*", "r*", true},
		{"role wrong tag", athenz.SplitRoleName, "sports:group.readers", "", "", false},
		{"role empty name", athenz.SplitRoleName, "sports:role.", "", "", false},
		{"role empty domain", athenz.SplitRoleName, ":role.r", "", "", false},
		{"role no colon", athenz.SplitRoleName, "sports.role.r", "", "", false},
		{"role tag after second colon", athenz.SplitRoleName, "a:b:role.r", "", "", false},
		{"group", athenz.SplitGroupName, "sports:group.admins", "sports", "admins", true},
		{"group wrong tag", athenz.SplitGroupName, "sports:role.admins", "", "", false},
		{"policy", athenz.SplitPolicyName, "sports:policy.admin", "sports", "admin", true},
		{"policy empty", athenz.SplitPolicyName, "sports:policy.", "", "", false},
		{"resource", athenz.SplitResource, "sports:hockey.scores", "sports", "hockey.scores", true},
		{"resource keeps later colons", athenz.SplitResource, "sports:a:b", "sports", "a:b", true},
		{"resource no colon", athenz.SplitResource, "sports", "", "", false},
		{"resource empty entity", athenz.SplitResource, "sports:", "", "", false},
		{"resource empty domain", athenz.SplitResource, ":x", "", "", false},
		{"principal", athenz.SplitPrincipal, "a.b.svc", "a.b", "svc", true},
		{"principal user", athenz.SplitPrincipal, "user.joe", "user", "joe", true},
		{"principal no dot", athenz.SplitPrincipal, "svc", "", "", false},
		{"principal leading dot", athenz.SplitPrincipal, ".svc", "", "", false},
		{"principal trailing dot", athenz.SplitPrincipal, "a.", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, r, ok := tc.fn(tc.input)
			if l != tc.wantLeft || r != tc.wantRight || ok != tc.wantOK {
				t.Errorf("split(%q) = (%q, %q, %v), want (%q, %q, %v)", tc.input, l, r, ok, tc.wantLeft, tc.wantRight, tc.wantOK)
			}
		})
	}
}

func TestJoinAndSplitRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		join  func(string, string) string
		split func(string) (string, string, bool)
		want  string
	}{
		{"role", athenz.JoinRoleName, athenz.SplitRoleName, "a.b:role.c"},
		{"group", athenz.JoinGroupName, athenz.SplitGroupName, "a.b:group.c"},
		{"policy", athenz.JoinPolicyName, athenz.SplitPolicyName, "a.b:policy.c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full := tc.join("a.b", "c")
			if full != tc.want {
				t.Fatalf("join = %q, want %q", full, tc.want)
			}
			if d, n, ok := tc.split(full); !ok || d != "a.b" || n != "c" {
				t.Errorf("split(%q) = (%q, %q, %v)", full, d, n, ok)
			}
			if !athenz.IsResourceName(full) {
				t.Errorf("%q is not a valid resource name", full)
			}
		})
	}
}

func TestDomainToDNS(t *testing.T) {
	tests := []struct {
		name, domain, want string
	}{
		{"single label", "sports", "sports"},
		{"dotted", "a.b", "a-b"},
		{"deep", "home.joe.dev", "home-joe-dev"},
		{"dashes kept", "a-b.c", "a-b-c"},
		{"underscore and case kept", "My_Dom.x", "My_Dom-x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := athenz.DomainToDNS(tc.domain); got != tc.want {
				t.Errorf("DomainToDNS(%q) = %q, want %q", tc.domain, got, tc.want)
			}
		})
	}
}
