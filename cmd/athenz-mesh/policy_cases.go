package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

type testFlags struct {
	domains string
	verbose bool
}

func newPolicyTestCmd(src *domainSource) *cobra.Command {
	var f testFlags
	cmd := &cobra.Command{
		Use:   "test [--verbose] [--domains DIR] [flags] DIR_OR_FILE...",
		Short: "Run decision cases (YAML) against domain files",
		Long: `Run decision cases kept as YAML against domain files, like 'opa test' for Athenz policy.

Each argument is a case file, or a directory whose cases.yaml and *_test.yaml files are all
run (not its subdirectories). A case file names its domain directory, relative to itself:

  domains: ./domains
  time: 2026-01-01T00:00:00Z        # optional default request time
  cases:
    - name: reader can read
      principal: sports.web
      action: read
      resource: sports:scores.final
      expect: allow                 # allow | deny
      reason: allowed               # optional: allowed, denied, no_match, not_member,
                                    #   member_expired, unknown_domain, domain_mismatch,
                                    #   invalid_request
      policy: readers               # optional: the policy of the deciding assertion
    - name: writer token            # token mode: roles from a credential
      token_domain: sports
      roles: [writers]
      action: write
      resource: sports:scores.final
      expect: allow

Unknown keys and invalid values are errors, reported with line and column. Prints a
"--- PASS" or "--- FAIL" line per case, the reasons for each failure, and a final
"N passed, N failed" line. See docs/policy.md for the full format.

Exit status: 0 when every case passed, 1 when a case failed, 2 on errors (unreadable or
invalid case files, domain load problems).`,
		Example: `  athenz-mesh policy test examples/quickstart
  athenz-mesh policy test --verbose policy/sports_test.yaml
  athenz-mesh policy test --domains exported/ my_cases_test.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("%s needs at least one case file or directory", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTest(cmd.OutOrStdout(), cmd.ErrOrStderr(), src, f, args)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "explain every decision: roles held and the deciding assertion")
	fl.StringVar(&f.domains, "domains", "", "directory of domain files to run every case file against, overriding their domains: key")
	return cmd
}

// caseRunner runs case files, loading each domain directory once.
type caseRunner struct {
	src            *domainSource
	stdout, stderr io.Writer
	flags          testFlags
	evaluators     map[string]*policy.Evaluator
	loadErrs       map[string]error
	passed, failed int
	errors         int
}

func runTest(stdout, stderr io.Writer, src *domainSource, f testFlags, args []string) error {
	r := &caseRunner{
		src:    src,
		stdout: stdout, stderr: stderr, flags: f,
		evaluators: map[string]*policy.Evaluator{},
		loadErrs:   map[string]error{},
	}
	for _, arg := range args {
		files, err := caseFiles(arg)
		if err != nil {
			r.error(err)
			continue
		}
		for _, file := range files {
			r.runFile(file)
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", r.passed, r.failed)
	switch {
	case r.errors > 0:
		return &statusError{code: exitError}
	case r.failed > 0:
		return answerNo(nil)
	}
	return nil
}

// caseFiles expands one argument: a directory yields its case files, a file itself.
func caseFiles(arg string) ([]string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, fmt.Errorf("case files: %w", err)
	}
	if st.IsDir() {
		return policy.FindCaseFiles(arg)
	}
	return []string{arg}, nil
}

func (r *caseRunner) error(err error) {
	r.errors++
	printError(r.stderr, err)
}

func (r *caseRunner) runFile(file string) {
	cf, err := policy.LoadCases(file)
	if err != nil {
		r.error(fmt.Errorf("case file %s: %w", file, err))
		return
	}
	dir := r.flags.domains
	if dir == "" {
		dir = cf.Domains
	}
	if dir == "" {
		r.error(fmt.Errorf("case file %s: no domains: add \"domains: DIR\" to the file or pass --domains", file))
		return
	}
	ev, err := r.evaluator(dir)
	if err != nil {
		r.error(fmt.Errorf("case file %s: %w", file, err))
		return
	}
	failedBefore := r.failed
	for _, res := range policy.RunCases(ev, cf.Cases) {
		r.report(ev, &res)
	}
	if n := r.failed - failedBefore; n > 0 {
		fmt.Fprintf(r.stdout, "FAIL  %s (%d of %d cases failed)\n", file, n, len(cf.Cases))
	} else {
		fmt.Fprintf(r.stdout, "ok    %s (%d cases)\n", file, len(cf.Cases))
	}
}

func (r *caseRunner) evaluator(dir string) (*policy.Evaluator, error) {
	key := filepath.Clean(dir)
	if err, ok := r.loadErrs[key]; ok {
		return nil, err
	}
	if ev, ok := r.evaluators[key]; ok {
		return ev, nil
	}
	ev, err := r.src.loadEvaluator(dir)
	if err != nil {
		// Report each domain directory's problems once, not once per case file.
		r.loadErrs[key] = errors.New("domains " + dir + " did not load (problems above)")
		return nil, err
	}
	r.evaluators[key] = ev
	return ev, nil
}

func (r *caseRunner) report(ev *policy.Evaluator, res *policy.CaseResult) {
	c := res.Case
	if res.Passed {
		r.passed++
		fmt.Fprintf(r.stdout, "--- PASS: %s\n", c.Name)
	} else {
		r.failed++
		fmt.Fprintf(r.stdout, "--- FAIL: %s (%s)\n", c.Name, c.Location())
		for _, m := range res.Mismatches {
			fmt.Fprintf(r.stdout, "    %s\n", m)
		}
	}
	if r.flags.verbose {
		x := ev.Explain(c.Request())
		var b strings.Builder
		writeExplanation(&b, &x)
		for line := range strings.Lines(b.String()) {
			fmt.Fprintf(r.stdout, "    %s", line)
		}
	}
}
