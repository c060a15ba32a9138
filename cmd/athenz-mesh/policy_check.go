package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

type checkFlags struct {
	domains     string
	principal   string
	action      string
	resource    string
	at          string
	roles       []string
	tokenDomain string
	explain     bool
	json        bool
}

func newPolicyCheckCmd(src *domainSource) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check --domains DIR --principal P --action A --resource R [flags]",
		Short: "Decide one request from domain files, and explain the decision",
		Long: `Decide whether PRINCIPAL may perform ACTION on RESOURCE ("domain:entity") with the domain
files in DIR, exactly as athenz-mesh authz would: the caller's roles in the resource's domain
come from membership (direct, wildcard, group, trust delegation; member expiry checked at
--at), then any matching DENY assertion denies, else any matching ALLOW allows, else deny.

With --roles and --token-domain the roles come from a credential instead (token mode: an
access token's aud and scp, a role token's d and r), and --principal is optional.

Prints "allow (...)" or "deny (reason)" to stdout; --explain adds the roles held, their
expiry, and the assertion that decided (or why none matched); --json prints the full
explanation as JSON.

Exit status: 0 when allowed, 1 when denied, 2 on any error (bad flags, load problems).`,
		Example: `  athenz-mesh policy check --domains examples/quickstart/domains \
      --principal sports.web --action read --resource sports:scores.final --explain
  athenz-mesh policy check --domains domains/ --token-domain sports --roles writers \
      --action write --resource sports:scores.final --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.OutOrStdout(), src, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.domains, "domains", "", "directory of domain files (ZMS DomainData, JSON or YAML); required")
	fl.StringVar(&f.principal, "principal", "", `the caller, "domain.service" or "user.name"; required unless --token-domain is given`)
	fl.StringVar(&f.action, "action", "", `the action, e.g. "read"; matched case-insensitively; required`)
	fl.StringVar(&f.resource, "resource", "", `the resource, "domain:entity"; its domain selects the policies; required`)
	fl.StringVar(&f.at, "at", "", "decide as of this RFC 3339 time, e.g. 2026-01-01T00:00:00Z; default now")
	fl.StringSliceVar(&f.roles, "roles", nil, "token mode: comma-separated short role names the credential grants (needs --token-domain)")
	fl.StringVar(&f.tokenDomain, "token-domain", "", "token mode: the domain the credential's roles belong to")
	fl.BoolVar(&f.explain, "explain", false, "explain the decision: roles held with expiry, the deciding assertion or why none matched")
	fl.BoolVar(&f.json, "json", false, "print the explanation as JSON (takes precedence over --explain)")
	return cmd
}

func (f *checkFlags) request() (policy.Request, error) {
	var missing []string
	for _, req := range []struct{ name, value string }{
		{"--domains", f.domains}, {"--action", f.action}, {"--resource", f.resource},
	} {
		if req.value == "" {
			missing = append(missing, req.name)
		}
	}
	if f.principal == "" && f.tokenDomain == "" {
		missing = append(missing, "--principal (or --token-domain)")
	}
	if len(missing) > 0 {
		return policy.Request{}, usageErrorf("missing %s", strings.Join(missing, ", "))
	}
	if len(f.roles) > 0 && f.tokenDomain == "" {
		return policy.Request{}, usageErrorf("--roles needs --token-domain: token roles belong to a domain")
	}
	r := policy.Request{
		Principal: f.principal, Action: f.action, Resource: f.resource,
		TokenDomain: f.tokenDomain, Roles: f.roles,
	}
	if f.at != "" {
		t, err := time.Parse(time.RFC3339Nano, f.at)
		if err != nil {
			return policy.Request{}, usageErrorf("--at %q: want an RFC 3339 time such as 2026-01-01T00:00:00Z", f.at)
		}
		r.Time = t
	}
	return r, nil
}

func runCheck(stdout io.Writer, src *domainSource, f checkFlags) error {
	req, err := f.request()
	if err != nil {
		return err
	}
	ev, err := src.loadEvaluator(f.domains)
	if err != nil {
		return failed(err)
	}
	x := ev.Explain(req)
	switch {
	case f.json:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(x); err != nil {
			return failed(fmt.Errorf("write explanation: %w", err))
		}
	case f.explain:
		writeExplanation(stdout, &x)
	default:
		fmt.Fprintln(stdout, decisionLine(&x.Decision))
	}
	if !x.Allowed {
		return answerNo(nil)
	}
	return nil
}

// decisionLine is the one-line answer: "allow (allowed by policy readers)", "deny (no_match)".
func decisionLine(d *policy.Decision) string {
	verdict := "deny"
	if d.Allowed {
		verdict = "allow"
	}
	if d.Match != nil {
		return fmt.Sprintf("%s (%s by policy %s)", verdict, d.Reason, d.Match.Policy)
	}
	return fmt.Sprintf("%s (%s)", verdict, d.Reason)
}

// writeExplanation prints an Explanation for people.
func writeExplanation(w io.Writer, x *policy.Explanation) {
	who := x.Principal
	if who == "" {
		who = "the token"
	}
	fmt.Fprintf(w, "%s: %s %s on %s\n", strings.ToUpper(verdictWord(x.Allowed)), who, x.Action, x.Resource)
	fmt.Fprintf(w, "  at:      %s\n", x.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  reason:  %s: %s\n", x.Reason, reasonText(x))

	if len(x.Roles) == 0 {
		fmt.Fprintf(w, "  roles:   none in domain %q\n", x.Domain)
	} else {
		fmt.Fprintf(w, "  roles in %s:\n", x.Domain)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, h := range x.Roles {
			fmt.Fprintf(tw, "    %s\tvia %s\t%s\n", h.Role, h.Via, expiryText(h))
		}
		tw.Flush()
	}
	if x.Match != nil {
		fmt.Fprintf(w, "  decided by: %s\n", assertionText(x.Match))
	}
	var others []*policy.CompiledAssertion
	for _, a := range x.Matches {
		if x.Match == nil || a.ID != x.Match.ID {
			others = append(others, a)
		}
	}
	if len(others) > 0 {
		fmt.Fprintln(w, "  also matched:")
		for _, a := range others {
			fmt.Fprintf(w, "    %s\n", assertionText(a))
		}
	}
	if !x.ValidUntil.IsZero() {
		fmt.Fprintf(w, "  valid until: %s (the earliest membership expiry it depends on)\n", x.ValidUntil.UTC().Format(time.RFC3339))
	}
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}

func expiryText(h policy.HeldRole) string {
	switch {
	case h.Expires.IsZero():
		return "no expiry"
	case h.Expired:
		return "EXPIRED " + h.Expires.UTC().Format(time.RFC3339)
	default:
		return "expires " + h.Expires.UTC().Format(time.RFC3339)
	}
}

// assertionText renders an assertion as "policy P #ID: EFFECT action on resource to role R".
func assertionText(a *policy.CompiledAssertion) string {
	return fmt.Sprintf("policy %s, assertion %d: %s %s on %s to role %s", a.Policy, a.ID, a.Effect, a.Action, a.Resource, a.Role)
}

// reasonText says in words why the decision came out as it did.
func reasonText(x *policy.Explanation) string {
	who := x.Principal
	if who == "" {
		who = "the token"
	}
	switch x.Reason {
	case policy.ReasonAllowed:
		return "an ALLOW assertion matched and no DENY did"
	case policy.ReasonDenied:
		return "a DENY assertion matched; DENY wins over every ALLOW"
	case policy.ReasonNoMatch:
		return fmt.Sprintf("%s holds roles in %s, but no assertion for those roles matches action %q on %q", who, x.Domain, x.Action, x.Resource)
	case policy.ReasonNotMember:
		return fmt.Sprintf("%s holds no role in domain %s", who, x.Domain)
	case policy.ReasonMemberExpired:
		return fmt.Sprintf("every role %s had in domain %s has expired", who, x.Domain)
	case policy.ReasonUnknownDomain:
		return fmt.Sprintf("no domain file defines domain %q", x.Domain)
	case policy.ReasonDomainMismatch:
		return fmt.Sprintf("the token's roles are for another domain than the resource's (%s)", x.Domain)
	case policy.ReasonInvalid:
		return `the request is malformed: action (and principal, outside token mode) must be set and the resource must be "domain:entity"`
	default:
		return string(x.Reason)
	}
}
