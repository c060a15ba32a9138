package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest domain or policy file the loaders accept, in bytes (64 MiB).
// Larger files are refused before they are parsed.
const MaxFileSize = 64 << 20

// Problem is one thing wrong with an input file.
type Problem struct {
	File string
	// Line and Column are 1-based; zero when the problem has no single position (for
	// example an unreadable file).
	Line, Column int
	Message      string
}

// String formats p as "file:line:col: message", leaving out unknown parts.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(p.Message)
	return b.String()
}

// LoadError reports every problem found in a load: decoding, validation and conflicts
// between files. Callers branch on it with errors.As.
type LoadError struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadOptions tunes LoadDirWith and LoadFilesWith. The zero value loads .pol files
// without checking their signatures and checks their expiry against the wall clock.
type LoadOptions struct {
	// ZTSKeys verifies the ZTS signature of .pol files: the key named by the file's keyId
	// must exist and verify it. Nil (the nil interface; a nil or empty KeyMap knows no key
	// and so refuses every .pol file): .pol files load unverified, expiry still checked.
	ZTSKeys PublicKeys
	// Now returns the current time, for the expiry of .pol files. Nil: time.Now.
	Now func() time.Time
}

func (o LoadOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// domainExts are the file name extensions LoadDir reads as domain files; ".pol" files
// (ZTS signed policy data) are read as well.
var domainExts = map[string]bool{".json": true, ".yaml": true, ".yml": true}

// LoadDir loads every domain in dir with the zero LoadOptions; see LoadDirWith.
func LoadDir(dir string) ([]*Domain, error) {
	return LoadDirWith(dir, LoadOptions{})
}

// LoadDirWith loads the files directly in dir (not in subdirectories) whose names end in
// .json, .yaml or .yml (ZMS DomainData, one domain each) or .pol (ZTS signed policy data
// as zpe-updater stores it), in name order; names starting with "." are skipped. It
// returns the domains in file name order, or, when any file has any problem, nil and a
// *LoadError listing every problem of every file (see LoadFilesWith).
func LoadDirWith(dir string, opts LoadOptions) ([]*Domain, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load domains: %w", err)
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if strings.HasPrefix(name, ".") || e.IsDir() || !(domainExts[ext] || ext == ".pol") {
			continue
		}
		paths = append(paths, filepath.Join(dir, name))
	}
	return LoadFilesWith(opts, paths...)
}

// LoadFiles loads the named files with the zero LoadOptions; see LoadFilesWith.
func LoadFiles(paths ...string) ([]*Domain, error) {
	return LoadFilesWith(LoadOptions{}, paths...)
}

// LoadFilesWith loads each named file by its extension: .json, .yaml and .yml as ZMS
// DomainData (ParseDomain), .pol as ZTS signed policy data (ParseSignedPolicyData). The
// domains come back in argument order, validated and normalised (see ParseDomain), each
// with Source set to its path.
//
// Loading is all or nothing: if any file cannot be read or has any problem, or two files
// define the same domain, LoadFilesWith returns nil and a *LoadError with every problem
// found, each naming its file and, where it can, line and column.
func LoadFilesWith(opts LoadOptions, paths ...string) ([]*Domain, error) {
	var (
		domains []*Domain
		probs   []Problem
		defined = make(map[string]string) // domain name → file
	)
	// Files parse independently: use every core (parsing is most of a large load).
	type result struct {
		dom   *Domain
		pos   positions
		probs []Problem
	}
	results := make([]result, len(paths))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, path := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			dom, pos, fileProbs := loadFile(path, opts)
			results[i] = result{dom, pos, fileProbs}
		}()
	}
	wg.Wait()
	for i, path := range paths {
		dom, pos, fileProbs := results[i].dom, results[i].pos, results[i].probs
		if len(fileProbs) > 0 {
			probs = append(probs, fileProbs...)
			continue
		}
		if first, dup := defined[dom.Name]; dup {
			s := pos.at(dom, "name", -1)
			probs = append(probs, Problem{File: path, Line: s.line, Column: s.col,
				Message: fmt.Sprintf("domain %q is also defined in %s", dom.Name, first)})
			continue
		}
		defined[dom.Name] = path
		domains = append(domains, dom)
	}
	if len(probs) > 0 {
		return nil, &LoadError{Problems: probs}
	}
	return domains, nil
}

// loadFile reads and parses one file; on success the problems are nil.
func loadFile(path string, opts LoadOptions) (*Domain, positions, []Problem) {
	ext := strings.ToLower(filepath.Ext(path))
	if !domainExts[ext] && ext != ".pol" {
		return nil, nil, []Problem{{File: path, Message: fmt.Sprintf(
			"unsupported file type %q: want .json, .yaml or .yml (ZMS domain data) or .pol (ZTS signed policy data)", ext)}}
	}
	data, err := readFile(path)
	if err != nil {
		return nil, nil, []Problem{{File: path, Message: err.Error()}}
	}
	if ext == ".pol" {
		return parseSignedPolicyFile(path, data, opts)
	}
	return parseDomainFile(path, data)
}

// readFile reads a regular file of at most MaxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if info.Size() > MaxFileSize {
		return nil, tooBig(info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, tooBig(int64(len(data)))
	}
	return data, nil
}

func tooBig(n int64) error {
	return fmt.Errorf("file is %d bytes, more than the %d byte limit", n, MaxFileSize)
}

// ParseDomain parses one domain file: a ZMS DomainData document (the ZMS API JSON, or
// `zms-cli -o json|yaml show-domain` output), or a ZMS SignedDomain wrapping one (as ZTS
// stores domains), in JSON or YAML; a file whose name ends in .json must be strict JSON.
// Field names match case-insensitively. The fields ZMS defines that do not affect
// decisions (descriptions, tags, audit and review settings, entities, a role member's
// active and approved flags, which ZTS ignores too, ...) are accepted and dropped; any
// other field is a problem. file names the input in problems and becomes the domain's
// Source.
//
// The domain is validated (see ValidateDomain) and then normalised:
//   - domain, role, group, policy, service, member and trust names, and assertion roles,
//     are lower-cased, as Athenz servers store them (actions and resources keep their
//     case; matching ignores it);
//   - plain role "members" become RoleMembers without expiry and Role.Members is
//     emptied, so RoleMembers is the whole membership (a name in both lists is kept once,
//     with its RoleMember settings);
//   - policy versions whose active field is false are dropped, so every policy left is
//     the one active version (or a policy without versions); DomainPolicies.Domain is set
//     to the domain name;
//   - assertion effects are "ALLOW" or "DENY": the file may spell them in any case, or
//     as the numbers 1 and 2 that zms-cli -o yaml writes; empty becomes "ALLOW".
//
// Any problem makes ParseDomain return nil and a *LoadError listing them all.
func ParseDomain(file string, data []byte) (*Domain, error) {
	dom, _, probs := parseDomainFile(file, data)
	if len(probs) > 0 {
		return nil, &LoadError{Problems: probs}
	}
	return dom, nil
}

func parseDomainFile(file string, data []byte) (*Domain, positions, []Problem) {
	if len(data) > MaxFileSize {
		return nil, nil, []Problem{{File: file, Message: tooBig(int64(len(data))).Error()}}
	}
	d := newDecoder(file)
	// About one recorded position per 40 bytes of input: sizing the map up front saves
	// rehashing it over and over on large exports.
	d.pos = make(positions, len(data)/40)
	var dom *Domain
	if d.jsonSyntax(data) {
		if root := d.parseTree(data); root != nil {
			dom = d.domainDocument(root)
			if dom == nil && len(d.probs) == 0 {
				d.problem(root, "no domain in the document")
			}
		}
	}
	if dom != nil {
		dom.Source = file
		d.probs = append(d.probs, validate(dom, d.pos, file)...)
	}
	if len(d.probs) > 0 {
		return nil, nil, sortProblems(d.probs)
	}
	normalize(dom)
	return dom, d.pos, nil
}

// MaxProblems is the most problems reported for one file; the rest are counted in a
// final problem, so that a badly broken file cannot produce an unbounded error.
const MaxProblems = 1000

// sortProblems orders one file's problems by position (keeping the order of problems at
// the same position) and applies MaxProblems.
func sortProblems(probs []Problem) []Problem {
	sort.SliceStable(probs, func(i, j int) bool {
		a, b := probs[i], probs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if n := len(probs) - MaxProblems; n > 0 {
		probs = append(probs[:MaxProblems:MaxProblems], Problem{File: probs[0].File,
			Message: fmt.Sprintf("%d more problems not shown", n)})
	}
	return probs
}

// yamlLine matches the position prefix of yaml.v3 error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseTree parses data (JSON or YAML) into the root node of its single document.
// yaml.v3 is third-party code fed untrusted input, so a panic in it is turned into a
// Problem rather than taking the process down.
func (d *decoder) parseTree(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			d.problem(nil, "cannot parse: %v", r)
			root = nil
		}
	}()
	if ext := strings.ToLower(filepath.Ext(d.file)); (ext == ".json" || ext == ".pol") && json.Valid(data) {
		// Strict JSON (jsonSyntax checked it): the fast path builds the same tree.
		if n, err := jsonTree(data); err == nil {
			return n
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problem(nil, "empty document")
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			d.syntaxError(err)
		} else {
			d.problem(&extra, "more than one YAML document: want one domain per file")
		}
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		d.problem(nil, "empty document")
		return nil
	}
	return doc.Content[0]
}

// jsonSyntax checks that a file named *.json or *.pol is strict JSON (YAML would also
// take trailing commas and comments), reporting the first syntax error with its position,
// which encoding/json pinpoints better than yaml.v3. Other files pass unchecked.
func (d *decoder) jsonSyntax(data []byte) bool {
	ext := strings.ToLower(filepath.Ext(d.file))
	if (ext != ".json" && ext != ".pol") || json.Valid(data) {
		return true
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		d.problem(nil, "not valid JSON: %v", err)
		return false
	}
	before := data[:min(int(se.Offset), len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	d.problemAt(spot{line: line, col: col}, "not valid JSON: %v", err)
	return false
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.probs = append(d.probs, Problem{File: d.file, Line: line, Message: "syntax error: " + m[2]})
		return
	}
	d.problem(nil, "syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}
