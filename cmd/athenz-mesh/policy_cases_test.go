package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeFiles writes name → content under dir, creating directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const testDomain = `name: sports
roles:
  - name: sports:role.readers
    roleMembers:
      - memberName: sports.web
policies:
  contents:
    domain: sports
    policies:
      - name: sports:policy.readers
        assertions:
          - role: sports:role.readers
            action: read
            resource: sports:scores.*
            effect: ALLOW
`

var summaryLine = regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`)

func TestPolicyTestQuickstart(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "policy", "test", "../../examples/quickstart")
	r.expect(t, 0, "--- PASS: web reads final scores\n", "ok    ../../examples/quickstart/cases.yaml")
	m := summaryLine.FindStringSubmatch(r.stdout)
	if m == nil || m[2] != "0" || m[1] == "0" {
		t.Errorf("summary = %q, want N passed, 0 failed", m)
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("quickstart cases failed:\n%s", r.stdout)
	}
}

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"domains/sports.yaml": testDomain,
		"other/sports.yaml":   strings.Replace(testDomain, "sports.web", "sports.other", 1),
		"bad/sports.yaml":     "name: sports\nroles: 3\n",
		"pass/cases.yaml": `domains: ../domains
cases:
  - {name: web reads, principal: sports.web, action: read, resource: sports:scores.x, expect: allow, policy: readers}
`,
		"pass/more_test.yaml": `domains: ../domains
cases:
  - {name: web cannot write, principal: sports.web, action: write, resource: sports:scores.x, expect: deny, reason: no_match}
`,
		"pass/notes.yaml": "not: a case file\n",
		"fail/cases.yaml": `domains: ../domains
cases:
  - {name: web reads, principal: sports.web, action: read, resource: sports:scores.x, expect: allow}
  - {name: wrong, principal: sports.web, action: read, resource: sports:scores.x, expect: deny}
`,
		"invalid/cases.yaml": `domains: ../domains
cases:
  - name: typo
    principal: sports.web
    acton: read
    resource: sports:scores.x
    expect: allow
`,
		"nodomains/cases.yaml": `cases:
  - {name: web reads, principal: sports.web, action: read, resource: sports:scores.x, expect: allow}
`,
		"baddomains/cases.yaml": `domains: ../bad
cases:
  - {name: web reads, principal: sports.web, action: read, resource: sports:scores.x, expect: allow}
`,
		"baddomains/again_test.yaml": `domains: ../bad
cases:
  - {name: web reads, principal: sports.web, action: read, resource: sports:scores.x, expect: allow}
`,
		"empty/README.md": "no cases here\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name    string
		args    []string
		code    int
		wants   []string
		summary string
		absent  []string
	}{
		{
			name:    "directory runs cases.yaml and *_test.yaml",
			args:    []string{p("pass")},
			code:    0,
			summary: "2 passed, 0 failed",
			absent:  []string{"notes.yaml", "FAIL"},
			wants:   []string{"--- PASS: web reads\n", "--- PASS: web cannot write\n", "ok    " + p("pass/cases.yaml") + " (1 cases)"},
		},
		{
			name:    "single file",
			args:    []string{p("pass/more_test.yaml")},
			code:    0,
			summary: "1 passed, 0 failed",
		},
		{
			name:    "a failing case",
			args:    []string{p("fail")},
			code:    1,
			summary: "1 passed, 1 failed",
			wants: []string{
				"--- PASS: web reads\n",
				"--- FAIL: wrong (" + p("fail/cases.yaml") + ":4)\n    want deny, got allow (allowed)\n",
				"FAIL  " + p("fail/cases.yaml") + " (1 of 2 cases failed)",
			},
		},
		{
			name:    "verbose explains every case",
			args:    []string{"--verbose", p("pass/cases.yaml")},
			code:    0,
			summary: "1 passed, 0 failed",
			wants:   []string{"--- PASS: web reads\n    ALLOW: sports.web read on sports:scores.x\n", "    decided by: policy readers"},
		},
		{
			name:    "--domains overrides the file",
			args:    []string{"--domains", p("other"), p("pass/cases.yaml")},
			code:    1,
			summary: "0 passed, 1 failed",
			wants:   []string{"want allow, got deny (not_member)"},
		},
		{
			name:    "invalid case file",
			args:    []string{p("invalid")},
			code:    2,
			summary: "0 passed, 0 failed",
			wants: []string{
				"athenz-mesh: case file " + p("invalid/cases.yaml") + ": 2 problems:\n" +
					p("invalid/cases.yaml") + `:3:5: case "typo": missing action` + "\n" +
					p("invalid/cases.yaml") + `:5:5: case "typo": unknown field "acton"`,
			},
		},
		{
			name:    "errors and failures: errors win",
			args:    []string{p("fail"), p("invalid"), p("pass")},
			code:    2,
			summary: "3 passed, 1 failed",
		},
		{
			name:    "no domains",
			args:    []string{p("nodomains")},
			code:    2,
			summary: "0 passed, 0 failed",
			wants:   []string{`no domains: add "domains: DIR" to the file or pass --domains`},
		},
		{
			name:    "domain load problems are reported once",
			args:    []string{p("baddomains")},
			code:    2,
			summary: "0 passed, 0 failed",
			wants:   []string{p("bad/sports.yaml") + ":2:8: ", "did not load (problems above)"},
		},
		{
			name:    "directory without case files",
			args:    []string{p("empty")},
			code:    2,
			summary: "0 passed, 0 failed",
			wants:   []string{"athenz-mesh: find case files: no cases.yaml or *_test.yaml in " + p("empty")},
		},
		{
			name:    "missing path",
			args:    []string{p("nope.yaml")},
			code:    2,
			summary: "0 passed, 0 failed",
			wants:   []string{"athenz-mesh: case files: stat " + p("nope.yaml")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, append([]string{"policy", "test"}, tt.args...)...)
			r.expect(t, tt.code, tt.wants...)
			if got := summaryLine.FindString(r.stdout); got != tt.summary {
				t.Errorf("summary line = %q, want %q\nstdout:\n%s", got, tt.summary, r.stdout)
			}
			if !strings.HasSuffix(r.stdout, tt.summary+"\n") {
				t.Errorf("stdout does not end with the summary line:\n%s", r.stdout)
			}
			for _, a := range tt.absent {
				if strings.Contains(r.stdout+r.stderr, a) {
					t.Errorf("output contains %q:\n%s%s", a, r.stdout, r.stderr)
				}
			}
			if strings.Count(r.stderr, "problem:") > 1 {
				t.Errorf("a problem list was printed more than once:\n%s", r.stderr)
			}
		})
	}
}
