package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestParseCases(t *testing.T) {
	t.Parallel()
	jan1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		yaml string
		want CaseFile
	}{
		{
			name: "full case",
			yaml: `domains: ./domains
time: 2026-01-01T00:00:00Z
cases:
  - name: reader can read
    principal: sports.api
    action: read
    resource: sports:scores
    expect: allow
    reason: allowed
    policy: readers
`,
			want: CaseFile{Path: "c.yaml", Domains: "./domains", Time: jan1, Cases: []Case{{
				Name: "reader can read", Principal: "sports.api", Action: "read", Resource: "sports:scores",
				Time: jan1, ExpectAllow: true, Reason: ReasonAllowed, Policy: "readers",
				File: "c.yaml", Line: 4, Column: 5,
			}}},
		},
		{
			name: "token mode with own time and quoted values",
			yaml: `cases:
- name: "token"
  roles: [readers, writers]
  token_domain: sports
  action: "write"
  resource: 'sports:scores'
  time: "2027-02-03T04:05:06.5+01:00"
  expect: deny
`,
			want: CaseFile{Path: "c.yaml", Cases: []Case{{
				Name: "token", Roles: []string{"readers", "writers"}, TokenDomain: "sports",
				Action: "write", Resource: "sports:scores",
				Time: time.Date(2027, 2, 3, 3, 5, 6, 5e8, time.UTC),
				File: "c.yaml", Line: 2, Column: 3,
			}}},
		},
		{
			name: "token domain without roles",
			yaml: `cases:
- {name: empty token, token_domain: sports, action: read, resource: "sports:x", expect: deny, reason: not_member}
`,
			want: CaseFile{Path: "c.yaml", Cases: []Case{{
				Name: "empty token", TokenDomain: "sports", Action: "read", Resource: "sports:x",
				Reason: ReasonNotMember, File: "c.yaml", Line: 2, Column: 3,
			}}},
		},
		{
			name: "anchors and aliases",
			yaml: `cases:
- name: a
  principal: &p sports.api
  action: read
  resource: sports:x
  expect: allow
- name: b
  principal: *p
  action: write
  resource: sports:x
  expect: deny
`,
			want: CaseFile{Path: "c.yaml", Cases: []Case{
				{Name: "a", Principal: "sports.api", Action: "read", Resource: "sports:x", ExpectAllow: true, File: "c.yaml", Line: 2, Column: 3},
				{Name: "b", Principal: "sports.api", Action: "write", Resource: "sports:x", File: "c.yaml", Line: 7, Column: 3},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCases("c.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("ParseCases: %v", err)
			}
			if !caseFilesEqual(got, &tt.want) {
				t.Errorf("ParseCases =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func caseFilesEqual(a, b *CaseFile) bool {
	if a.Path != b.Path || a.Domains != b.Domains || !a.Time.Equal(b.Time) || len(a.Cases) != len(b.Cases) {
		return false
	}
	for i := range a.Cases {
		x, y := a.Cases[i], b.Cases[i]
		if !x.Time.Equal(y.Time) || !slices.Equal(x.Roles, y.Roles) {
			return false
		}
		x.Time, y.Time, x.Roles, y.Roles = time.Time{}, time.Time{}, nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func TestParseCasesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		// want are the expected problems, each "line:col: substring of the message".
		want []string
	}{
		{"empty file", "", []string{"empty case file"}},
		{"not a mapping", "- a\n", []string{"1:1: want a mapping with a cases list"}},
		{"syntax error", "cases: [\n", []string{"did not find expected node content"}},
		{"no cases key", "domains: x\n", []string{"1:1: missing cases"}},
		{"cases not a list", "cases: {}\n", []string{"1:8: cases: want a list"}},
		{"cases empty", "cases: []\n", []string{"1:8: cases: the list is empty"}},
		{"unknown top-level key", "domain: x\ncases: []\n", []string{`1:1: case file: unknown field "domain"`, "the list is empty"}},
		{"two documents", "cases: []\n---\nx: 1\n", []string{"more than one YAML document", "the list is empty"}},
		{
			name: "unknown case key and typo'd value",
			yaml: `cases:
  - name: a
    principal: p.q
    action: read
    resource: d:x
    expect: alow
    resoruce: d:y
`,
			want: []string{`6:13: case "a": expect: want allow or deny, got "alow"`, `7:5: case "a": unknown field "resoruce"`},
		},
		{
			name: "missing everything",
			yaml: "cases:\n  - {}\n",
			want: []string{
				"2:5: case 1: missing name", "2:5: case 1: missing action", "2:5: case 1: missing resource",
				"2:5: case 1: missing principal", "2:5: case 1: missing expect",
			},
		},
		{
			name: "bad types",
			yaml: `cases:
  - name: [a]
    principal: {x: 1}
    roles: readers
    token_domain: d
    action: read
    resource: d:x
    expect: deny
`,
			want: []string{"2:11: name: want a string, got a list", "3:16: principal: want a string, got a mapping", "4:12: roles: want a list of strings"},
		},
		{
			name: "bad time, reason and roles",
			yaml: `time: tomorrow
cases:
  - name: a
    principal: p.q
    action: read
    resource: d:x
    time: 2026-13-01
    roles: [r]
    expect: allow
    reason: granted
  - name: a
    principal: p.q
    action: read
    resource: d:x
    expect: allow
    reason: no_match
`,
			want: []string{
				`1:7: time: want an RFC 3339 time`,
				`7:11: time: want an RFC 3339 time`,
				`8:12: case "a": roles need token_domain`,
				`10:13: case "a": reason: unknown reason "granted"`,
				`11:5: case "a": duplicate name (first at line 3)`,
				`16:13: case "a": reason no_match contradicts expect allow`,
			},
		},
		{
			name: "duplicate key and empty role",
			yaml: `cases:
  - name: a
    name: b
    token_domain: d
    roles: [""]
    action: read
    resource: d:x
    expect: deny
`,
			want: []string{`3:5: case "a": duplicate field "name"`, `5:13: roles: empty role name`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseCases("c.yaml", []byte(tt.yaml))
			var ce *LoadError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseCases error = %v, want a *LoadError", err)
			}
			var got []string
			for _, p := range ce.Problems {
				if p.File != "c.yaml" {
					t.Errorf("problem %q: File = %q, want c.yaml", p.Message, p.File)
				}
				got = append(got, p.String())
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
					t.Errorf("no problem contains %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

// casesDomains is a small domain set exercising every reason a case can expect.
func casesDomains(t *testing.T) []*Domain {
	t.Helper()
	expiry, err := athenz.ParseTimestamp("2026-06-01T00:00:00.000Z")
	if err != nil {
		t.Fatal(err)
	}
	return []*Domain{{
		Name: "sports",
		Roles: []*Role{
			{Name: "sports:role.readers", RoleMembers: []*RoleMember{
				{MemberName: "sports.web"},
				{MemberName: "user.bob", Expiration: &expiry},
			}},
			{Name: "sports:role.writers", Members: []string{"sports.ingest"}},
		},
		Policies: &SignedPolicies{Contents: &DomainPolicies{Domain: "sports", Policies: []*Policy{
			{Name: "sports:policy.readers", Assertions: []*Assertion{
				{Role: "sports:role.readers", Action: "read", Resource: "sports:scores.*"},
				{Role: "sports:role.readers", Action: "read", Resource: "sports:scores.secret", Effect: Deny},
			}},
			{Name: "sports:policy.writers", Assertions: []*Assertion{
				{Role: "sports:role.writers", Action: "write", Resource: "sports:scores.*"},
			}},
		}}},
	}}
}

func TestRunCases(t *testing.T) {
	t.Parallel()
	compiled, err := Compile(casesDomains(t), CompileOptions{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	ev, err := NewEvaluator(compiled)
	if err != nil {
		t.Fatalf("NewEvaluator: %v", err)
	}
	cf, err := ParseCases("cases.yaml", []byte(`time: 2026-01-01T00:00:00Z
cases:
  - {name: allowed, principal: sports.web, action: READ, resource: sports:Scores.final, expect: allow, reason: allowed, policy: readers}
  - {name: denied, principal: sports.web, action: read, resource: sports:scores.secret, expect: deny, reason: denied, policy: readers}
  - {name: no match, principal: sports.web, action: write, resource: sports:scores.final, expect: deny, reason: no_match}
  - {name: not member, principal: sports.nobody, action: read, resource: sports:scores.final, expect: deny, reason: not_member}
  - {name: bob before expiry, principal: user.bob, action: read, resource: sports:scores.final, expect: allow}
  - {name: bob after expiry, principal: user.bob, action: read, resource: sports:scores.final, time: 2026-07-01T00:00:00Z, expect: deny, reason: member_expired}
  - {name: unknown domain, principal: sports.web, action: read, resource: weather:today, expect: deny, reason: unknown_domain}
  - {name: token, token_domain: sports, roles: [writers], action: write, resource: sports:scores.final, expect: allow, policy: writers}
  - {name: token mismatch, token_domain: media, roles: [writers], action: write, resource: sports:scores.final, expect: deny, reason: domain_mismatch}
  - {name: invalid, principal: sports.web, action: read, resource: nocolon, expect: deny, reason: invalid_request}
  - {name: wrong outcome, principal: sports.web, action: write, resource: sports:scores.final, expect: allow}
  - {name: wrong reason, principal: sports.nobody, action: read, resource: sports:scores.final, expect: deny, reason: no_match}
  - {name: wrong policy, principal: sports.ingest, action: write, resource: sports:scores.x, expect: allow, policy: readers}
  - {name: policy without match, principal: sports.nobody, action: write, resource: sports:scores.x, expect: deny, policy: writers}
`))
	if err != nil {
		t.Fatalf("ParseCases: %v", err)
	}
	wantFail := map[string][]string{
		"wrong outcome":        {"want allow, got deny (no_match)"},
		"wrong reason":         {"want reason no_match, got not_member"},
		"wrong policy":         {"want policy readers, got writers"},
		"policy without match": {"want policy writers, got no matching assertion"},
	}
	results := RunCases(ev, cf.Cases)
	if len(results) != len(cf.Cases) {
		t.Fatalf("RunCases returned %d results for %d cases", len(results), len(cf.Cases))
	}
	for i, r := range results {
		if r.Case != &cf.Cases[i] {
			t.Errorf("result %d is for case %q, want %q", i, r.Case.Name, cf.Cases[i].Name)
		}
		want := wantFail[r.Case.Name]
		if r.Passed != (want == nil) || !slices.Equal(r.Mismatches, want) {
			t.Errorf("case %q: Passed = %v, Mismatches = %q; want %q (decision %+v)", r.Case.Name, r.Passed, r.Mismatches, want, r.Decision)
		}
	}
}

func TestFindAndLoadCases(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "cases")
	files, err := FindCaseFiles(dir)
	if err != nil {
		t.Fatalf("FindCaseFiles: %v", err)
	}
	want := []string{filepath.Join(dir, "cases.yaml"), filepath.Join(dir, "expiry_test.yaml")}
	if !slices.Equal(files, want) {
		t.Fatalf("FindCaseFiles = %q, want %q", files, want)
	}
	for _, f := range files {
		cf, err := LoadCases(f)
		if err != nil {
			t.Fatalf("LoadCases(%s): %v", f, err)
		}
		if wantDomains := filepath.Join(dir, "domains"); cf.Domains != wantDomains {
			t.Errorf("LoadCases(%s).Domains = %q, want %q", f, cf.Domains, wantDomains)
		}
		if len(cf.Cases) == 0 || cf.Cases[0].File != f {
			t.Errorf("LoadCases(%s): cases %+v, want File set to the path", f, cf.Cases)
		}
	}

	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "notes.yaml"), []byte("cases: []"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FindCaseFiles(empty); err == nil || !strings.Contains(err.Error(), "no cases.yaml or *_test.yaml") {
		t.Errorf("FindCaseFiles(dir without case files) error = %v, want one naming the expected files", err)
	}
	if _, err := LoadCases(filepath.Join(empty, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadCases(missing) error = %v, want os.ErrNotExist", err)
	}
}

func TestIsCaseFileName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"cases.yaml": true, "cases.yml": true, "sports_test.yaml": true, "a_test.yml": true,
		"sports.yaml": false, "cases.json": false, "test.yaml": false, "sports_test.yaml.bak": false,
	} {
		if got := IsCaseFileName(name); got != want {
			t.Errorf("IsCaseFileName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestCaseFilesPass runs the case files under testdata/cases against their domain files,
// through the loader, as `athenz-mesh policy test` does.
func TestCaseFilesPass(t *testing.T) {
	t.Parallel()
	files, err := FindCaseFiles(filepath.Join("testdata", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			cf, err := LoadCases(f)
			if err != nil {
				t.Fatalf("LoadCases: %v", err)
			}
			domains, err := LoadDir(cf.Domains)
			if err != nil {
				t.Fatalf("LoadDir(%s): %v", cf.Domains, err)
			}
			compiled, err := Compile(domains, CompileOptions{})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			ev, err := NewEvaluator(compiled)
			if err != nil {
				t.Fatalf("NewEvaluator: %v", err)
			}
			for _, r := range RunCases(ev, cf.Cases) {
				if !r.Passed {
					t.Errorf("%s: case %q: %s", r.Case.Location(), r.Case.Name, strings.Join(r.Mismatches, "; "))
				}
			}
		})
	}
}

// FuzzParseCases holds that ParseCases never panics, and that whatever it accepts meets
// the invariants the runner relies on.
func FuzzParseCases(f *testing.F) {
	for _, seed := range []string{
		"cases:\n- {name: a, principal: p.q, action: read, resource: 'd:x', expect: allow}\n",
		"time: 2026-01-01T00:00:00Z\ncases:\n- {name: t, token_domain: d, roles: [r], action: a, resource: 'd:x', expect: deny, reason: no_match}\n",
		"cases: [&a {name: x}, *a]\n",
		"cases:\n- name: a\n  name: b\n",
		"",
		"[",
	} {
		f.Add([]byte(seed))
	}
	if files, err := FindCaseFiles(filepath.Join("testdata", "cases")); err == nil {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := ParseCases("fuzz.yaml", data)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("error %v is not a *LoadError with problems", err)
			}
			return
		}
		if len(cf.Cases) == 0 {
			t.Fatal("accepted a file without cases")
		}
		names := map[string]bool{}
		for _, c := range cf.Cases {
			if c.Name == "" || c.Action == "" || c.Resource == "" || (c.Principal == "" && c.TokenDomain == "") {
				t.Fatalf("accepted an incomplete case: %+v", c)
			}
			if names[c.Name] {
				t.Fatalf("accepted duplicate case name %q", c.Name)
			}
			names[c.Name] = true
		}
	})
}
