package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	base := []string{"policy", "check", "--domains", quickstartDomains, "--at", "2026-12-01T00:00:00Z"}
	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{
			name:  "allowed",
			args:  []string{"--principal", "sports.web", "--action", "read", "--resource", "sports:scores.final"},
			code:  0,
			wants: []string{"allow (allowed by policy readers)\n"},
		},
		{
			name:  "denied by DENY assertion",
			args:  []string{"--principal", "media.frontend", "--action", "read", "--resource", "sports:scores.live"},
			code:  1,
			wants: []string{"deny (denied by policy partners)\n"},
		},
		{
			name:  "no match",
			args:  []string{"--principal", "sports.web", "--action", "write", "--resource", "sports:scores.final"},
			code:  1,
			wants: []string{"deny (no_match)\n"},
		},
		{
			name: "explain a DENY",
			args: []string{"--principal", "media.frontend", "--action", "read", "--resource", "sports:scores.live", "--explain"},
			code: 1,
			wants: []string{
				"DENY: media.frontend read on sports:scores.live",
				"at:      2026-12-01T00:00:00Z",
				"reason:  denied: a DENY assertion matched",
				"roles in sports:",
				"partners",
				"decided by: policy partners, assertion",
				": DENY read on sports:scores.live to role partners",
				"also matched:",
				": ALLOW read on sports:scores.* to role partners",
			},
		},
		{
			name: "explain an expired membership",
			args: []string{"--principal", "user.bob", "--action", "read", "--resource", "sports:scores.final", "--explain", "--at", "2027-04-01T00:00:00Z"},
			code: 1,
			wants: []string{
				"reason:  member_expired: every role user.bob had in domain sports has expired",
				"readers", "EXPIRED 2027-03-31T23:59:59Z",
			},
		},
		{
			name:  "explain an allow with expiry",
			args:  []string{"--principal", "user.bob", "--action", "read", "--resource", "sports:scores.final", "--explain"},
			code:  0,
			wants: []string{"ALLOW: user.bob read on sports:scores.final", "expires 2027-03-31T23:59:59Z", "valid until: 2027-03-31T23:59:59Z"},
		},
		{
			name:  "explain not a member",
			args:  []string{"--principal", "weather.api", "--action", "read", "--resource", "sports:scores.final", "--explain"},
			code:  1,
			wants: []string{"reason:  not_member: weather.api holds no role in domain sports", `roles:   none in domain "sports"`},
		},
		{
			name:  "token mode",
			args:  []string{"--token-domain", "sports", "--roles", "readers,writers", "--action", "write", "--resource", "sports:scores.final", "--explain"},
			code:  0,
			wants: []string{"ALLOW: the token write on sports:scores.final", "via token", "decided by: policy writers"},
		},
		{
			name:  "token for another domain",
			args:  []string{"--token-domain", "media", "--roles", "admin", "--action", "read", "--resource", "sports:scores.final"},
			code:  1,
			wants: []string{"deny (domain_mismatch)"},
		},
		{
			name:  "unknown domain",
			args:  []string{"--principal", "sports.web", "--action", "read", "--resource", "weather:today", "--explain"},
			code:  1,
			wants: []string{`unknown_domain: no domain file defines domain "weather"`},
		},
		{
			name:  "missing flags",
			args:  []string{"--action", "read"},
			code:  2,
			wants: []string{"athenz-mesh: missing --resource, --principal (or --token-domain)"},
		},
		{
			name:  "bad time",
			args:  []string{"--principal", "a.b", "--action", "read", "--resource", "sports:x", "--at", "yesterday"},
			code:  2,
			wants: []string{`athenz-mesh: --at "yesterday": want an RFC 3339 time`},
		},
		{
			name:  "roles without token domain",
			args:  []string{"--principal", "a.b", "--roles", "readers", "--action", "read", "--resource", "sports:x"},
			code:  2,
			wants: []string{"athenz-mesh: --roles needs --token-domain"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, append(append([]string(nil), base...), tt.args...)...)
			r.expect(t, tt.code, tt.wants...)
			if tt.code < 2 && r.stderr != "" {
				t.Errorf("a decision wrote to stderr: %s", r.stderr)
			}
		})
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "policy", "check", "--domains", quickstartDomains, "--json", "--explain",
		"--principal", "user.carol", "--action", "WRITE", "--resource", "sports:scores.final", "--at", "2026-12-01T00:00:00Z")
	r.expect(t, 0)
	var x policy.Explanation
	if err := json.Unmarshal([]byte(r.stdout), &x); err != nil {
		t.Fatalf("--json output is not an Explanation: %v\n%s", err, r.stdout)
	}
	if !x.Allowed || x.Reason != policy.ReasonAllowed || x.Action != "write" || x.Principal != "user.carol" ||
		x.Match == nil || x.Match.Policy != "writers" || len(x.Roles) == 0 {
		t.Errorf("explanation = %+v, want allowed by policy writers with carol's roles", x)
	}
}

func TestPolicyCheckLoadProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "sports.yaml")
	if err := os.WriteFile(bad, []byte("name: sports\nrolez: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "policy", "check", "--domains", dir, "--principal", "a.b", "--action", "read", "--resource", "sports:x")
	r.expect(t, 2, "athenz-mesh: load domains from "+dir+": 1 problem:\n", bad+":2:1: ")
	if !strings.Contains(r.stderr, `"rolez"`) {
		t.Errorf("stderr does not name the unknown field:\n%s", r.stderr)
	}

	r = runCLI(t, "policy", "check", "--domains", filepath.Join(dir, "missing"), "--principal", "a.b", "--action", "read", "--resource", "sports:x")
	r.expect(t, 2, "athenz-mesh: load domains from ")
}
