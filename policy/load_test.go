package policy

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

var updateLoad = flag.Bool("update-load", false, "rewrite the want.txt and golden files under testdata/load")

// loadProblems returns the problems of err, which must be a *LoadError, as
// "file:line:col: message" lines with file relative to dir.
func loadProblems(t *testing.T, dir string, err error) []string {
	t.Helper()
	le, ok := errors.AsType[*LoadError](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *LoadError", err, err)
	}
	var lines []string
	for _, p := range le.Problems {
		rel, relErr := filepath.Rel(dir, p.File)
		if relErr != nil {
			t.Fatalf("problem file %q is not under %s", p.File, dir)
		}
		p.File = filepath.ToSlash(rel)
		lines = append(lines, p.String())
	}
	return lines
}

// readWant reads a want.txt: one expected problem per line; blank lines and lines
// starting with # are comments.
func readWant(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	return want
}

// TestLoadBadInputs loads each directory under testdata/load/bad and requires exactly the
// problems listed in its want.txt (want.txt itself is not a domain file, so LoadDir skips
// it). Comment lines at the top of want.txt say what the case is about.
func TestLoadBadInputs(t *testing.T) {
	cases, err := os.ReadDir("testdata/load/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/load/bad", c.Name())
			domains, err := LoadDir(dir)
			if err == nil {
				t.Fatalf("LoadDir(%s) = %d domains, want an error", dir, len(domains))
			}
			if domains != nil {
				t.Errorf("LoadDir returned %d domains with its error, want none", len(domains))
			}
			got := loadProblems(t, dir, err)
			wantPath := filepath.Join(dir, "want.txt")
			if *updateLoad {
				updateWant(t, wantPath, got)
				return
			}
			want := readWant(t, wantPath)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

// updateWant rewrites the problem lines of a want.txt, keeping its leading comments.
func updateWant(t *testing.T, path string, got []string) {
	t.Helper()
	var head []string
	if data, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(line, "#") {
				break
			}
			head = append(head, line)
		}
	}
	out := strings.Join(append(head, got...), "\n") + "\n"
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadDirDomains loads the realistic domains and compares them, normalised, with a
// golden JSON file.
func TestLoadDirDomains(t *testing.T) {
	domains, err := LoadDir("testdata/domains")
	if err != nil {
		t.Fatal(err)
	}
	var names, sources []string
	for _, d := range domains {
		names = append(names, d.Name)
		sources = append(sources, filepath.ToSlash(d.Source))
	}
	if got, want := strings.Join(names, " "), "media sports weather"; got != want {
		t.Errorf("domains = %s, want %s (file name order)", got, want)
	}
	if got, want := strings.Join(sources, " "), "testdata/domains/media.json testdata/domains/sports.json testdata/domains/weather.yaml"; got != want {
		t.Errorf("sources = %s, want %s", got, want)
	}
	got, err := json.MarshalIndent(domains, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/load/domains.golden.json"
	if *updateLoad {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		t.Errorf("loaded domains differ from %s (run with -update-load and review the diff)", golden)
	}
	for _, d := range domains {
		if err := ValidateDomain(d); err != nil {
			t.Errorf("loaded domain %s does not re-validate: %v", d.Name, err)
		}
	}
}

// TestNormalisation spells out the normalisation rules on the sports domain.
func TestNormalisation(t *testing.T) {
	data := `{"name": "Sports",
	  "roles": [
	    {"name": "Sports:role.Writers", "members": ["Sports.Ingest", "sports.batch"],
	     "roleMembers": [{"memberName": "sports.batch", "expiration": "2030-01-01T00:00:00Z"}]},
	    {"name": "sports:role.partners", "trust": "Weather"}],
	  "groups": [{"name": "sports:group.Devs", "groupMembers": [{"memberName": "User.Erin"}]}],
	  "services": [{"name": "Sports.API"}],
	  "policies": {"contents": {"policies": [
	    {"name": "sports:policy.W", "version": "0", "active": false,
	     "assertions": [{"role": "sports:role.writers", "action": "*", "resource": "sports:*"}]},
	    {"name": "sports:policy.W", "version": "1", "active": true,
	     "assertions": [{"role": "SPORTS:role.writers", "action": "Write", "resource": "Sports:Scores", "effect": "deny"},
	                    {"role": "sports:role.writers", "action": "read", "resource": "sports:scores"}]},
	    {"name": "sports:policy.plain",
	     "assertions": [{"role": "sports:role.partners", "action": "read", "resource": "sports:x", "effect": "Allow"}]}]}}}`
	d, err := ParseDomain("n.json", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	w := d.Roles[0]
	if d.Name != "sports" || w.Name != "sports:role.writers" || d.Roles[1].Trust != "weather" {
		t.Errorf("names not lower-cased: %q %q %q", d.Name, w.Name, d.Roles[1].Trust)
	}
	if w.Members != nil {
		t.Errorf("Role.Members = %v, want nil after merging into RoleMembers", w.Members)
	}
	var members []string
	for _, m := range w.RoleMembers {
		s := m.MemberName
		if m.Expiration != nil {
			s += "@" + m.Expiration.String()
		}
		members = append(members, s)
	}
	if got, want := strings.Join(members, " "), "sports.batch@2030-01-01T00:00:00.000Z sports.ingest"; got != want {
		t.Errorf("writers members = %s, want %s (roleMembers first, then plain members not already listed)", got, want)
	}
	if d.Groups[0].Name != "sports:group.devs" || d.Groups[0].GroupMembers[0].MemberName != "user.erin" || d.Services[0].Name != "sports.api" {
		t.Errorf("group, group member or service not lower-cased")
	}
	dp := d.Policies.Contents
	if dp.Domain != "sports" || len(dp.Policies) != 2 || dp.Policies[0].Version != "1" || dp.Policies[0].Name != "sports:policy.w" {
		t.Fatalf("policies = %+v, want the active version 1 of sports:policy.w and sports:policy.plain", dp)
	}
	a := dp.Policies[0].Assertions
	if a[0].Role != "sports:role.writers" || a[0].Effect != Deny || a[1].Effect != Allow || dp.Policies[1].Assertions[0].Effect != Allow {
		t.Errorf("assertions = %+v %+v, want lower-case roles and effects DENY, ALLOW", a[0], a[1])
	}
	if a[0].Action != "Write" || a[0].Resource != "Sports:Scores" {
		t.Errorf("action and resource = %q %q, want their case kept", a[0].Action, a[0].Resource)
	}
}

// TestSameDomainJSONAndYAML holds the ZMS API JSON and the zms-cli YAML of one domain
// (testdata/load/forms/sports.yaml was produced by the real zms-cli encoding) to the same
// result.
func TestSameDomainJSONAndYAML(t *testing.T) {
	load := func(path string) []byte {
		ds, err := LoadFiles(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(ds[0])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if j, y := load("testdata/domains/sports.json"), load("testdata/load/forms/sports.yaml"); string(j) != string(y) {
		t.Errorf("JSON and YAML forms differ:\n json: %s\n yaml: %s", j, y)
	}
}

func TestLoadDirSelection(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yml", "name: b\n")
	write("a.YAML", "name: a\n")
	write("c.json", `{"name": "c"}`)
	write(".hidden.json", "not even json")
	write("README.md", "# not a domain")
	write("notes.txt", "ignored")
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("sub.json/d.json", `{"name": "d"}`)
	domains, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range domains {
		names = append(names, d.Name)
	}
	if got, want := strings.Join(names, " "), "a b c"; got != want {
		t.Errorf("LoadDir = %s, want %s", got, want)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || errors.As(err, new(*LoadError)) {
		t.Errorf("LoadDir(missing dir) = %v, want a plain error", err)
	}
}

func TestLoadFilesProblems(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "domain.txt")
	if err := os.WriteFile(txt, []byte("name: x"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = LoadFiles(txt, big, filepath.Join(dir, "missing.json"), dir+"/", "testdata/domains/sports.json")
	got := loadProblems(t, dir, err)
	want := []string{
		`domain.txt: unsupported file type ".txt": want .json, .yaml or .yml (ZMS domain data) or .pol (ZTS signed policy data)`,
		`big.yaml: file is 67108865 bytes, more than the 67108864 byte limit`,
		`missing.json: cannot read: open ` + filepath.Join(dir, "missing.json") + `: no such file or directory`,
	}
	if len(got) != 4 || strings.Join(got[:3], "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n got  %q\n want %q and one for the directory", got, want)
	}
	if _, err := ParseDomain("big.json", make([]byte, MaxFileSize+1)); err == nil {
		t.Errorf("ParseDomain accepted more than MaxFileSize bytes")
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Column: 5, Message: "m"}, "a.yaml:3:5: m"},
		{Problem{File: "a.yaml", Line: 3, Message: "m"}, "a.yaml:3: m"},
		{Problem{File: "a.yaml", Message: "m"}, "a.yaml: m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	e := &LoadError{Problems: []Problem{{File: "a", Line: 1, Column: 2, Message: "x"}, {File: "b", Message: "y"}}}
	if got, want := e.Error(), "a:1:2: x\nb: y"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestValidateDomainInCode validates a domain built in code (no positions).
func TestValidateDomainInCode(t *testing.T) {
	d := &Domain{Name: "sports", Source: "code", Roles: []*Role{{Name: "sports:role.r", Members: []string{"user.a", "user.a"}}}}
	err := ValidateDomain(d)
	le, ok := errors.AsType[*LoadError](err)
	if !ok || len(le.Problems) != 1 || le.Problems[0].String() != `code: role "sports:role.r": member "user.a" is listed twice` {
		t.Errorf("ValidateDomain = %v", err)
	}
	d.Roles[0].Members = []string{"user.a"}
	d.Services = []*Service{{Name: "sports.api", PublicKeys: []*PublicKeyEntry{{ID: "0", Key: athenz.YEncode([]byte("not pem"))}}}}
	if err := ValidateDomain(d); err == nil || !strings.Contains(err.Error(), "not a ybase64-encoded PEM public key") {
		t.Errorf("ValidateDomain with a bad key = %v", err)
	}
}

func TestMaxProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: sports\nroles:\n  - name: sports:role.r\n    members:\n")
	for range MaxProblems + 5 {
		b.WriteString("      - bad name\n")
	}
	_, err := ParseDomain("many.yaml", []byte(b.String()))
	le, ok := errors.AsType[*LoadError](err)
	if !ok || len(le.Problems) != MaxProblems+1 {
		t.Fatalf("got %v, want %d problems", err, MaxProblems+1)
	}
	if last := le.Problems[MaxProblems].String(); last != "many.yaml: 5 more problems not shown" {
		t.Errorf("last problem = %q", last)
	}
}

// TestExpiryLimits loads the domain and role expiry limits from the ZMS API JSON names
// and the lower-case zms-cli YAML keys, and refuses negative ones at their position.
func TestExpiryLimits(t *testing.T) {
	type limits struct{ svc, roleCert, token, certR, tokenR int32 }
	tests := []struct {
		name, file, data string
		want             limits
		problem          string // the single expected problem, "" for none
	}{
		{"json", "d.json", `{"name": "d", "serviceCertExpiryMins": 1440, "roleCertExpiryMins": 720, "tokenExpiryMins": 60,
  "roles": [{"name": "d:role.r", "certExpiryMins": 30, "tokenExpiryMins": 15}]}`,
			limits{1440, 720, 60, 30, 15}, ""},
		{"yaml zms-cli keys", "d.yaml", "name: d\nservicecertexpirymins: 1440\nrolecertexpirymins: 720\ntokenexpirymins: 60\n" +
			"roles:\n- name: d:role.r\n  certexpirymins: 30\n  tokenexpirymins: 15\n",
			limits{1440, 720, 60, 30, 15}, ""},
		{"absent and null are no limit", "d.json", `{"name": "d", "tokenExpiryMins": null, "roles": [{"name": "d:role.r"}]}`,
			limits{}, ""},
		{"negative domain limit", "d.json", "{\"name\": \"d\",\n \"serviceCertExpiryMins\": -5}",
			limits{}, `d.json:2:27: domain "d": serviceCertExpiryMins -5 is negative: want minutes, or 0 for no limit`},
		{"negative role limit", "d.yaml", "name: d\nroles:\n- name: d:role.r\n  tokenexpirymins: -1\n",
			limits{}, `d.yaml:4:20: role "d:role.r": tokenExpiryMins -1 is negative: want minutes, or 0 for no limit`},
		{"beyond 32 bits", "d.json", `{"name": "d", "tokenExpiryMins": 4294967296}`,
			limits{}, `d.json:1:34: domain tokenExpiryMins: "4294967296" is not a 32-bit integer`},
		{"wrong type", "d.json", `{"name": "d", "roles": [{"name": "d:role.r", "certExpiryMins": "60"}]}`,
			limits{}, `d.json:1:64: role certExpiryMins: want an integer, got a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dom, err := ParseDomain(tt.file, []byte(tt.data))
			if tt.problem != "" {
				le, ok := errors.AsType[*LoadError](err)
				if !ok || len(le.Problems) != 1 || le.Problems[0].String() != tt.problem {
					t.Fatalf("ParseDomain = %v, want the one problem %s", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := limits{dom.ServiceCertExpiryMins, dom.RoleCertExpiryMins, dom.TokenExpiryMins, 0, 0}
			if len(dom.Roles) == 1 {
				got.certR, got.tokenR = dom.Roles[0].CertExpiryMins, dom.Roles[0].TokenExpiryMins
			}
			if got != tt.want {
				t.Errorf("limits = %+v, want %+v", got, tt.want)
			}
		})
	}
}
