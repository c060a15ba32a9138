// Command athenz-mesh is the one athenz-mesh binary: the ZTS-compatible issuer (`issuer`,
// with its CA tooling under `issuer ca`), the node agent (`agent`), the ext_authz server
// (`authz`), and the policy compiler and checker (`policy`); the all-in-one dev mode is
// being built (see README.md).
//
// Exit status: 0 on success, 1 when the answer is "no" (a denied check, a failed test case,
// a bundle that fails verification), 2 when the command could not run (bad flags or input).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// Exit statuses shared by every subcommand.
const (
	exitOK    = 0
	exitNo    = 1 // the command ran and the answer is no
	exitError = 2 // the command could not run
)

// exitStatusHelp is appended to the root help; subcommands describe their own 1.
const exitStatusHelp = `

Exit status:
  0  success (policy check: allowed; policy test: every case passed)
  1  the command ran and the answer is no (policy check: denied; policy test: a case
     failed; policy verify: the bundle failed verification)
  2  the command could not run: bad flags or arguments, unreadable or invalid input`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args, writing to stdout and stderr, and returns the exit
// status. Tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var st *statusError
	if !errors.As(err, &st) {
		// Errors cobra raises itself (unknown command, wrong number of arguments) and
		// errors from flag parsing are usage errors.
		st = &statusError{code: exitError, err: err, usage: true}
	}
	if st.err != nil {
		printError(stderr, st.err)
		if st.usage && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return st.code
}

// newRootCmd builds the command tree. Every call returns a fresh tree, so tests can run
// commands concurrently without sharing flag state.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "athenz-mesh",
		Short: "Athenz service identity and authorization for Envoy and Istio",
		Long: `athenz-mesh brings Athenz service identity and role-based authorization to Envoy and Istio.
One binary: Athenz-compatible issuer, node agent (SDS), ext_authz server and policy compiler.

Available today: issuer (the ZTS-compatible CA and token service, and issuer ca init,
rotate, show), agent (SDS, Workload API, files and tokens for workloads; register, rotate,
rolecert), authz (the Envoy ext_authz server), policy (compile, verify, check, test) and
version. The dev mode is being built.` + exitStatusHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &statusError{code: exitError, err: err, usage: true}
	})
	root.AddCommand(newVersionCmd(), newPolicyCmd(), newAuthzCmd(), newIssuerCmd(), newAgentCmd(), newDevCmd())
	return root
}

// statusError carries an exit status. A nil err exits silently: the command has already
// said what it had to (a denied check, a failed test run).
type statusError struct {
	code  int
	err   error
	usage bool // print a pointer to --help after the message
}

func (e *statusError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *statusError) Unwrap() error { return e.err }

// usageErrorf reports a misuse of flags or arguments (exit status 2).
func usageErrorf(format string, args ...any) error {
	return &statusError{code: exitError, err: fmt.Errorf(format, args...), usage: true}
}

// failed reports that the command could not run (exit status 2).
func failed(err error) error {
	return &statusError{code: exitError, err: err}
}

// answerNo reports a "no" answer (exit status 1); err, when non-nil, is printed.
func answerNo(err error) error {
	return &statusError{code: exitNo, err: err}
}

// printError writes err to w as "athenz-mesh: message". Load problems (a
// *policy.LoadError, possibly wrapped) are printed after the message one per line, as
// compilers print them: "file:line:col: message".
func printError(w io.Writer, err error) {
	var le *policy.LoadError
	if errors.As(err, &le) && len(le.Problems) > 0 {
		// The wrapping context is the message minus the problem list it ends with.
		context := strings.TrimSuffix(strings.TrimSuffix(err.Error(), le.Error()), ": ")
		if context == "" {
			context = "load"
		}
		fmt.Fprintf(w, "athenz-mesh: %s: %s:\n", context, plural(len(le.Problems), "problem"))
		for _, p := range le.Problems {
			fmt.Fprintln(w, p.String())
		}
		return
	}
	fmt.Fprintf(w, "athenz-mesh: %s\n", err)
}

// plural returns "1 problem", "2 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
