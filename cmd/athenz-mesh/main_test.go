package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// quickstartDomains are the example domains; the command tests use them so that the
// README's commands are exercised too.
const quickstartDomains = "../../examples/quickstart/domains"

// result is what one in-process run of the binary produced.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// expect checks the exit code and that each want string appears in stdout+stderr.
func (r result) expect(t *testing.T, code int, wants ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output does not contain %q\nstdout:\n%s\nstderr:\n%s", w, r.stdout, r.stderr)
		}
	}
}

func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCmd(), nil)
	if len(paths) < 7 {
		t.Fatalf("found %d commands, want at least root, version, policy and its 4 subcommands", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.Join(append([]string{"athenz-mesh"}, path...), " "), func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, append(append([]string(nil), path...), "--help")...)
			r.expect(t, 0, "Usage:")
			if r.stderr != "" {
				t.Errorf("--help wrote to stderr: %s", r.stderr)
			}
		})
	}
}

func TestEveryFlagHasHelp(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s --%s has no help text", c.CommandPath(), f.Name)
			}
		})
		if c.Short == "" {
			t.Errorf("%s has no short description", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

func TestRootHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"--help"}, {"help"}} {
		r := runCLI(t, args...)
		r.expect(t, 0,
			"athenz-mesh brings Athenz service identity and role-based authorization to Envoy and Istio.",
			"Exit status:", "policy", "version")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"unknown command", []string{"bogus"}, []string{`athenz-mesh: unknown command "bogus"`, "Run 'athenz-mesh --help' for usage."}},
		{"unknown policy subcommand", []string{"policy", "compil"}, []string{`athenz-mesh: unknown command "compil" for "athenz-mesh policy"`}},
		{"unknown flag", []string{"policy", "check", "--nope"}, []string{"athenz-mesh: unknown flag: --nope", "Run 'athenz-mesh policy check --help'"}},
		{"flag without value", []string{"policy", "check", "--domains"}, []string{"athenz-mesh: flag needs an argument: --domains"}},
		{"extra argument", []string{"version", "now"}, []string{"athenz-mesh: unknown command \"now\""}},
		{"compile without dir", []string{"policy", "compile", "--out", "x.tar.gz"}, []string{"athenz-mesh: athenz-mesh policy compile takes one argument, DIR; got 0"}},
		{"test without args", []string{"policy", "test"}, []string{"athenz-mesh: athenz-mesh policy test needs at least one case file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tt.args...)
			r.expect(t, exitError, tt.wants...)
			if r.stdout != "" {
				t.Errorf("usage error wrote to stdout: %s", r.stdout)
			}
		})
	}
}
