package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// CaseFile is a file of decision cases: requests and the decisions expected for them, run
// against a set of domain files by `athenz-mesh policy test` (the Athenz counterpart of
// `opa test`). Its YAML form is
//
//	domains: ./domains              # optional; relative to the case file
//	time: 2026-01-01T00:00:00Z      # optional default request time
//	cases:
//	  - name: reader can read
//	    principal: sports.api
//	    action: read
//	    resource: sports:scores
//	    time: 2026-01-01T00:00:00Z  # optional; overrides the file's time
//	    roles: [readers]            # optional token mode, with token_domain
//	    token_domain: sports
//	    expect: allow               # allow | deny
//	    reason: allowed             # optional; checked when given
//	    policy: readers             # optional; the deciding assertion's policy
//
// Decoding is strict: unknown keys, wrong types and invalid values are errors, all
// reported at once in a *LoadError with their line and column.
type CaseFile struct {
	// Path is the file the cases were read from; empty when parsed from memory.
	Path string
	// Domains is the directory of domain files the cases run against, made relative to
	// the directory of Path by LoadCases. Empty means the caller supplies the domains.
	Domains string
	// Time is the default request time of the file's cases; zero means "now", which makes
	// cases that depend on member expiry change outcome as time passes.
	Time time.Time
	// Cases are the cases in file order.
	Cases []Case
}

// Case is one decision case.
type Case struct {
	// Name identifies the case in output; names are unique within a file.
	Name string
	// Principal, Action and Resource are the request. Principal may be empty in token mode.
	Principal string
	Action    string
	Resource  string
	// Time is the request time: the case's own time, else the file's, else zero (now).
	Time time.Time
	// TokenDomain and Roles select token mode (see Request.TokenDomain).
	TokenDomain string
	Roles       []string
	// ExpectAllow is the expected outcome: true for "expect: allow", false for "deny".
	ExpectAllow bool
	// Reason, when non-empty, is the expected Decision.Reason.
	Reason Reason
	// Policy, when non-empty, is the expected policy of the deciding assertion
	// (Decision.Match.Policy); a decision without a matching assertion fails it.
	Policy string
	// File, Line and Column locate the case in its file, for messages.
	File   string
	Line   int
	Column int
}

// Request returns the authorization request the case asks.
func (c *Case) Request() Request {
	return Request{
		Principal:   c.Principal,
		Action:      c.Action,
		Resource:    c.Resource,
		Time:        c.Time,
		TokenDomain: c.TokenDomain,
		Roles:       c.Roles,
	}
}

// Location returns "file:line" (or "line N" without a file) for messages.
func (c *Case) Location() string {
	if c.File == "" {
		return fmt.Sprintf("line %d", c.Line)
	}
	return fmt.Sprintf("%s:%d", c.File, c.Line)
}

// CaseResult is the outcome of running one Case.
type CaseResult struct {
	Case     *Case
	Decision Decision
	// Passed is true when the decision met every expectation of the case.
	Passed bool
	// Mismatches say, one per unmet expectation, what was wanted and what came out.
	Mismatches []string
}

// RunCases decides every case with ev and compares the decisions with the expectations.
// It returns one result per case, in order. It never fails: a request the evaluator finds
// invalid is a decision (ReasonInvalid) like any other.
func RunCases(ev *Evaluator, cases []Case) []CaseResult {
	results := make([]CaseResult, len(cases))
	for i := range cases {
		c := &cases[i]
		d := ev.Decide(c.Request())
		results[i] = CaseResult{Case: c, Decision: d, Mismatches: mismatches(c, d)}
		results[i].Passed = len(results[i].Mismatches) == 0
	}
	return results
}

func mismatches(c *Case, d Decision) []string {
	var out []string
	if d.Allowed != c.ExpectAllow {
		out = append(out, fmt.Sprintf("want %s, got %s (%s)", outcome(c.ExpectAllow), outcome(d.Allowed), d.Reason))
	}
	if c.Reason != "" && d.Reason != c.Reason {
		out = append(out, fmt.Sprintf("want reason %s, got %s", c.Reason, d.Reason))
	}
	if c.Policy != "" {
		switch {
		case d.Match == nil:
			out = append(out, fmt.Sprintf("want policy %s, got no matching assertion", c.Policy))
		case !strings.EqualFold(d.Match.Policy, c.Policy):
			out = append(out, fmt.Sprintf("want policy %s, got %s", c.Policy, d.Match.Policy))
		}
	}
	return out
}

func outcome(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}

// LoadCases reads and parses the case file at path, and resolves its domains directory
// relative to the file's directory.
func LoadCases(path string) (*CaseFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read case file: %w", err)
	}
	cf, err := ParseCases(path, data)
	if err != nil {
		return nil, err
	}
	if cf.Domains != "" && !filepath.IsAbs(cf.Domains) {
		cf.Domains = filepath.Join(filepath.Dir(path), cf.Domains)
	}
	return cf, nil
}

// ParseCases parses a case file's YAML; name is used in messages and as CaseFile.Path.
// The domains path is returned as written. Any problem yields a *LoadError listing all
// of them, each with the line and column where it is.
func ParseCases(name string, data []byte) (*CaseFile, error) {
	p := &caseParser{file: name}
	cf := p.parse(data)
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool {
			a, b := p.problems[i], p.problems[j]
			return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
		})
		return nil, &LoadError{Problems: p.problems}
	}
	return cf, nil
}

// FindCaseFiles returns the case files in dir, sorted: every *_test.yaml, *_test.yml,
// cases.yaml and cases.yml directly in it (not in subdirectories). A directory without
// case files is an error, so that a mistyped path cannot pass silently.
func FindCaseFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("find case files: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !IsCaseFileName(e.Name()) {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("find case files: no cases.yaml or *_test.yaml in %s", dir)
	}
	sort.Strings(files)
	return files, nil
}

// IsCaseFileName reports whether a file name is one FindCaseFiles picks up.
func IsCaseFileName(name string) bool {
	switch name {
	case "cases.yaml", "cases.yml":
		return true
	}
	return strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml")
}

// caseParser walks the YAML node tree itself, rather than decoding into structs, so that
// it can report every problem, each with its column, in one pass.
type caseParser struct {
	file     string
	problems []Problem
}

func (p *caseParser) addf(n *yaml.Node, format string, args ...any) {
	pr := Problem{File: p.file, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

var fileKeys = []string{"cases", "domains", "time"}

var caseKeys = []string{"action", "expect", "name", "policy", "principal", "reason", "resource", "roles", "time", "token_domain"}

func (p *caseParser) parse(data []byte) *CaseFile {
	cf := &CaseFile{Path: p.file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addf(nil, "empty case file: want a mapping with a cases list")
		} else {
			p.addf(nil, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return cf
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.addf(&extra, "more than one YAML document: a case file holds one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root, "want a mapping with a cases list, got %s", kindName(root))
		return cf
	}
	var casesNode *yaml.Node
	p.eachKey(root, fileKeys, "case file", func(key string, v *yaml.Node) {
		switch key {
		case "domains":
			cf.Domains = p.str(v, key)
		case "time":
			cf.Time = p.time(v, key)
		case "cases":
			casesNode = v
		}
	})
	switch {
	case casesNode == nil:
		p.addf(root, "missing cases: want a list of cases")
		return cf
	case casesNode.Kind != yaml.SequenceNode:
		p.addf(casesNode, "cases: want a list, got %s", kindName(casesNode))
		return cf
	case len(casesNode.Content) == 0:
		p.addf(casesNode, "cases: the list is empty")
		return cf
	}
	names := map[string]int{}
	for i, n := range casesNode.Content {
		c := p.parseCase(n, i, cf.Time)
		if c == nil {
			continue
		}
		if c.Name != "" {
			if line, dup := names[c.Name]; dup {
				p.addf(n, "case %q: duplicate name (first at line %d)", c.Name, line)
			}
			names[c.Name] = n.Line
		}
		cf.Cases = append(cf.Cases, *c)
	}
	return cf
}

// parseCase decodes one case; it returns nil when the node is not a mapping.
func (p *caseParser) parseCase(n *yaml.Node, index int, defaultTime time.Time) *Case {
	if n.Kind != yaml.MappingNode {
		p.addf(n, "case %d: want a mapping, got %s", index+1, kindName(n))
		return nil
	}
	c := &Case{File: p.file, Line: n.Line, Column: n.Column, Time: defaultTime}
	var expect, nameNode, reasonNode, rolesNode *yaml.Node
	label := fmt.Sprintf("case %d", index+1)
	// Name the case in every message, even those about keys before its name.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "name" {
			if v.Kind == yaml.ScalarNode && v.Value != "" {
				label = fmt.Sprintf("case %q", v.Value)
			}
			break
		}
	}
	p.eachKey(n, caseKeys, label, func(key string, v *yaml.Node) {
		switch key {
		case "name":
			c.Name, nameNode = p.str(v, key), v
		case "principal":
			c.Principal = p.str(v, key)
		case "action":
			c.Action = p.str(v, key)
		case "resource":
			c.Resource = p.str(v, key)
		case "time":
			if t := p.time(v, key); !t.IsZero() {
				c.Time = t
			}
		case "roles":
			c.Roles, rolesNode = p.strs(v, key), v
		case "token_domain":
			c.TokenDomain = p.str(v, key)
		case "expect":
			expect = v
		case "reason":
			c.Reason, reasonNode = Reason(p.str(v, key)), v
		case "policy":
			c.Policy = p.str(v, key)
		}
	})
	switch {
	case nameNode == nil:
		p.addf(n, "%s: missing name", label)
	case c.Name == "" && nameNode.Kind == yaml.ScalarNode:
		p.addf(nameNode, "%s: name is empty", label)
	}
	if c.Action == "" {
		p.addf(n, "%s: missing action", label)
	}
	if c.Resource == "" {
		p.addf(n, "%s: missing resource", label)
	}
	if c.Principal == "" && c.TokenDomain == "" {
		p.addf(n, "%s: missing principal (or token_domain and roles for token mode)", label)
	}
	if rolesNode != nil && c.TokenDomain == "" {
		p.addf(rolesNode, "%s: roles need token_domain: token roles belong to a domain", label)
	}
	switch {
	case expect == nil:
		p.addf(n, "%s: missing expect: want allow or deny", label)
	case expect.Value == "allow" && expect.Kind == yaml.ScalarNode:
		c.ExpectAllow = true
	case expect.Value == "deny" && expect.Kind == yaml.ScalarNode:
	default:
		p.addf(expect, "%s: expect: want allow or deny, got %q", label, expect.Value)
	}
	if reasonNode != nil && c.Reason != "" {
		switch {
		case !slices.Contains(knownReasons, c.Reason):
			p.addf(reasonNode, "%s: reason: unknown reason %q (known: %s)", label, c.Reason, joinReasons())
		case expect != nil && (c.Reason == ReasonAllowed) != c.ExpectAllow:
			p.addf(reasonNode, "%s: reason %s contradicts expect %s", label, c.Reason, expect.Value)
		}
	}
	return c
}

// knownReasons are the values a case's reason may take.
var knownReasons = []Reason{
	ReasonAllowed, ReasonDenied, ReasonNoMatch, ReasonNotMember, ReasonMemberExpired,
	ReasonUnknownDomain, ReasonDomainMismatch, ReasonInvalid,
}

func joinReasons() string {
	s := make([]string, len(knownReasons))
	for i, r := range knownReasons {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// eachKey calls fn for every known key of mapping m, reporting unknown and duplicate keys.
func (p *caseParser) eachKey(m *yaml.Node, known []string, what string, fn func(key string, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			p.addf(k, "%s: keys must be strings", what)
		case !slices.Contains(known, k.Value):
			p.addf(k, "%s: unknown field %q (known: %s)", what, k.Value, strings.Join(known, ", "))
		case seen[k.Value]:
			p.addf(k, "%s: duplicate field %q", what, k.Value)
		default:
			seen[k.Value] = true
			fn(k.Value, v)
		}
	}
}

func (p *caseParser) str(v *yaml.Node, key string) string {
	if v.Kind != yaml.ScalarNode {
		p.addf(v, "%s: want a string, got %s", key, kindName(v))
		return ""
	}
	if v.Tag == "!!null" {
		return ""
	}
	return v.Value
}

func (p *caseParser) strs(v *yaml.Node, key string) []string {
	if v.Kind != yaml.SequenceNode {
		p.addf(v, "%s: want a list of strings, got %s", key, kindName(v))
		return nil
	}
	out := make([]string, 0, len(v.Content))
	for _, e := range v.Content {
		if s := p.str(e, key); s != "" {
			out = append(out, s)
		} else if e.Kind == yaml.ScalarNode {
			p.addf(e, "%s: empty role name", key)
		}
	}
	return out
}

func (p *caseParser) time(v *yaml.Node, key string) time.Time {
	s := p.str(v, key)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		p.addf(v, "%s: want an RFC 3339 time such as 2026-01-01T00:00:00Z, got %q", key, s)
		return time.Time{}
	}
	return t
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a document"
	}
}
