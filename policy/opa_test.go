package policy

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
)

// These tests load the bundle WriteBundle writes into the OPA Go library, as a user's OPA
// would, and hold the Rego to the decision function; TestOPABinary does the same with a
// real opa executable (OPA_BIN, else opa on PATH).

// opaBundle reads a bundle with OPA's own reader, verifying it with pub when given.
func opaBundle(t testing.TB, raw []byte, pubPEM []byte, alg string) (bundle.Bundle, error) {
	t.Helper()
	r := bundle.NewReader(bytes.NewReader(raw))
	if pubPEM != nil {
		r = r.WithBundleVerificationConfig(bundle.NewVerificationConfig(
			map[string]*bundle.KeyConfig{"default": {Key: string(pubPEM), Algorithm: alg}}, "default", "", nil))
	} else {
		r = r.WithSkipBundleVerification(true)
	}
	return r.Read()
}

// regoQuery prepares query over the bundle of c.
func regoQuery(t testing.TB, c *Compiled, query string) rego.PreparedEvalQuery {
	t.Helper()
	b, err := opaBundle(t, writeBundle(t, c, BundleOptions{}), nil, "")
	if err != nil {
		t.Fatalf("OPA bundle reader: %v", err)
	}
	pq, err := rego.New(rego.Query(query), rego.ParsedBundle("athenz-mesh", &b), rego.StrictBuiltinErrors(false)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare %s: %v", query, err)
	}
	return pq
}

// evalBindings evaluates pq on input and returns the first result's bindings.
func evalBindings(t testing.TB, pq rego.PreparedEvalQuery, input any) rego.Vars {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("eval: %d results, want 1", len(rs))
	}
	return rs[0].Bindings
}

// regoDecision is data.athenz.authz.decision, decoded strictly.
type regoDecision struct {
	Allow  bool   `json:"allow"`
	Reason Reason `json:"reason"`
	Domain string `json:"domain,omitempty"`
	Match  *struct {
		ID       int    `json:"id"`
		Policy   string `json:"policy"`
		Role     string `json:"role"`
		Action   string `json:"action"`
		Resource string `json:"resource"`
		Effect   Effect `json:"effect"`
	} `json:"match,omitempty"`
}

func (d regoDecision) matchID() int {
	if d.Match == nil {
		return -1
	}
	return d.Match.ID
}

func (d regoDecision) String() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// convert re-decodes an OPA value (maps, json.Number) into v, strictly.
func convert(t testing.TB, value any, v any) {
	t.Helper()
	b, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeJSONStrict(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// regoDecider evaluates data.athenz.authz through OPA.
type regoDecider struct {
	pq rego.PreparedEvalQuery
}

func newRegoDecider(t testing.TB, c *Compiled) *regoDecider {
	return &regoDecider{pq: regoQuery(t, c, "decision := data.athenz.authz.decision; allow := data.athenz.authz.allow")}
}

func (d *regoDecider) decide(t testing.TB, input map[string]any) regoDecision {
	t.Helper()
	vars := evalBindings(t, d.pq, input)
	var got regoDecision
	convert(t, vars["decision"], &got)
	if allow, ok := vars["allow"].(bool); !ok || allow != got.Allow {
		t.Fatalf("data.athenz.authz.allow = %v, decision.allow = %v", vars["allow"], got.Allow)
	}
	return got
}

// requestInput is the Rego input for r (the JSON form of a Request).
func requestInput(r Request) map[string]any {
	in := map[string]any{"principal": r.Principal, "action": r.Action, "resource": r.Resource}
	if !r.Time.IsZero() {
		in["time"] = r.Time.Format(time.RFC3339Nano)
	}
	if r.TokenDomain != "" {
		in["domain"] = r.TokenDomain
		roles := make([]any, len(r.Roles))
		for i, x := range r.Roles {
			roles[i] = x
		}
		in["roles"] = roles
	}
	return in
}

// testT0 is the reference instant of the hand-built world; memberships that expire
// expire exactly then.
var testT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// regoWorld is a hand-built snapshot with one feature per assertion (see TestRegoDecision).
func regoWorld() *Compiled {
	e := testT0.UnixNano()
	sports := &CompiledDomain{
		Roles: []string{"admin", "blocked", "reader", "writer"},
		Members: map[string]map[string]int64{
			"user.joe":    {"admin": 0},
			"user.jane":   {"reader": e},
			"user.both":   {"reader": e, "writer": 0},
			"user.gone":   {"reader": e, "writer": e},
			"user.denied": {"reader": 0, "blocked": 0},
		},
		Prefixes: []PrefixMember{
			{Prefix: "partner.", Role: "reader", Expires: e},
			{Prefix: "sports.", Role: "reader"},
		},
	}
	fileAssertions(sports,
		mkAssertion(0, "readers", "reader", "read", "sports:doc", Allow),
		mkAssertion(1, "admins", "admin", "*", "sports:*", Allow),
		mkAssertion(2, "admins", "admin", "delete", "sports:protected", Deny),
		mkAssertion(3, "admins", "admin", "read", "sports:doc", Allow),
		mkAssertion(4, "readers", "reader", "get", "sports:file.(v?)[x]+*", Allow),
		mkAssertion(5, "readers", "reader", "get", "sports:a.b(c)[d]+e", Allow),
		mkAssertion(6, "writers", "writ*", "write", "sports:doc", Allow),
		mkAssertion(7, "readers", "reader", "g?t", "sports:glob", Allow),
		mkAssertion(8, "blocked", "block?d", "read", "sports:*", Deny),
		mkAssertion(9, "readers", "reader", "re^d$", "sports:doc", Allow),
	)
	open := &CompiledDomain{
		Roles:    []string{"guest"},
		Members:  map[string]map[string]int64{},
		Prefixes: []PrefixMember{{Prefix: "", Role: "guest"}},
	}
	fileAssertions(open, mkAssertion(0, "all", "guest", "read", "open:*", Allow))
	return &Compiled{
		Revision: "world-1",
		Domains: map[string]*CompiledDomain{
			"sports": sports,
			"open":   open,
			"empty":  {Roles: []string{}, Members: map[string]map[string]int64{}},
		},
		Mapping: &Mapping{DefaultDomain: "sports", AthenzTrustDomains: []string{"athenz.test"}},
	}
}

// decisionCase is a request with the decision the function gives. input, when set,
// replaces the Rego input made from req (for inputs a Request cannot express; such cases
// are not run natively).
type decisionCase struct {
	name   string
	req    Request
	input  map[string]any
	reason Reason
	match  int // -1: no match
}

func decisionCases() []decisionCase {
	t0, t1 := testT0, testT0.Add(time.Nanosecond)
	req := func(p, a, r string, at time.Time) Request {
		return Request{Principal: p, Action: a, Resource: r, Time: at}
	}
	token := func(domain string, roles []string, a, r string) Request {
		return Request{Action: a, Resource: r, TokenDomain: domain, Roles: roles, Time: t0}
	}
	return []decisionCase{
		// Membership and expiry.
		{name: "exact allow", req: req("user.jane", "read", "sports:doc", t0.Add(-time.Hour)), reason: ReasonAllowed, match: 0},
		{name: "expiry instant still counts", req: req("user.jane", "read", "sports:doc", t0), reason: ReasonAllowed, match: 0},
		{name: "one ns after expiry", req: req("user.jane", "read", "sports:doc", t1), reason: ReasonMemberExpired, match: -1},
		{name: "one role expired, another held", req: req("user.both", "read", "sports:doc", t1), reason: ReasonNoMatch, match: -1},
		{name: "every role expired", req: req("user.gone", "read", "sports:doc", t1), reason: ReasonMemberExpired, match: -1},
		{name: "wildcard member", req: req("sports.api", "read", "sports:doc", t1), reason: ReasonAllowed, match: 0},
		{name: "wildcard member at its expiry", req: req("partner.x", "read", "sports:doc", t0), reason: ReasonAllowed, match: 0},
		{name: "wildcard member expired", req: req("partner.x", "read", "sports:doc", t1), reason: ReasonMemberExpired, match: -1},
		{name: "wildcard prefix is a prefix, not a glob", req: req("xsports.api", "read", "sports:doc", t0), reason: ReasonNotMember, match: -1},
		{name: "star member (empty prefix)", req: req("anyone.at.all", "read", "open:thing", t0), reason: ReasonAllowed, match: 0},
		{name: "not a member", req: req("user.nobody", "read", "sports:doc", t0), reason: ReasonNotMember, match: -1},
		{name: "domain without members", req: req("user.joe", "read", "empty:doc", t0), reason: ReasonNotMember, match: -1},
		{name: "holds roles, nothing matches", req: req("sports.api", "write", "sports:doc", t0), reason: ReasonNoMatch, match: -1},

		// Effects and match ids.
		{name: "DENY beats ALLOW", req: req("user.joe", "delete", "sports:protected", t0), reason: ReasonDenied, match: 2},
		{name: "lowest ALLOW id across indexes", req: req("user.joe", "read", "sports:doc", t0), reason: ReasonAllowed, match: 1},
		{name: "role glob DENY", req: req("user.denied", "read", "sports:doc", t0), reason: ReasonDenied, match: 8},
		{name: "role glob ALLOW", req: req("user.both", "write", "sports:doc", t1), reason: ReasonAllowed, match: 6},
		{name: "role glob ignores expired roles", req: req("user.gone", "write", "sports:doc", t1), reason: ReasonMemberExpired, match: -1},

		// Globs.
		{name: "action and resource globs", req: req("user.joe", "frobnicate", "sports:a:b:c", t0), reason: ReasonAllowed, match: 1},
		{name: "glob resource with metacharacters", req: req("sports.api", "get", "sports:file.(v1)[x]+tail", t0), reason: ReasonAllowed, match: 4},
		{name: "glob star matches empty", req: req("sports.api", "get", "sports:file.(v1)[x]+", t0), reason: ReasonAllowed, match: 4},
		{name: "dot is literal", req: req("sports.api", "get", "sports:fileX(v1)[x]+", t0), reason: ReasonNoMatch, match: -1},
		{name: "question mark is one character", req: req("sports.api", "get", "sports:file.(v12)[x]+", t0), reason: ReasonNoMatch, match: -1},
		{name: "question mark is not zero characters", req: req("sports.api", "get", "sports:file.()[x]+", t0), reason: ReasonNoMatch, match: -1},
		{name: "brackets are literal", req: req("sports.api", "get", "sports:file.(v1)x+", t0), reason: ReasonNoMatch, match: -1},
		{name: "plus is literal", req: req("sports.api", "get", "sports:file.(v1)[xx]", t0), reason: ReasonNoMatch, match: -1},
		{name: "question mark matches a multibyte character", req: req("sports.api", "get", "sports:file.(vé)[x]+", t0), reason: ReasonAllowed, match: 4},
		{name: "literal resource with metacharacters", req: req("sports.api", "get", "sports:a.b(c)[d]+e", t0), reason: ReasonAllowed, match: 5},
		{name: "literal resource is not a pattern", req: req("sports.api", "get", "sports:aXb(c)[d]+e", t0), reason: ReasonNoMatch, match: -1},
		{name: "action glob", req: req("sports.api", "gxt", "sports:glob", t0), reason: ReasonAllowed, match: 7},
		{name: "action glob is anchored", req: req("sports.api", "geet", "sports:glob", t0), reason: ReasonNoMatch, match: -1},
		{name: "regex anchors in an action are literal", req: req("sports.api", "re^d$", "sports:doc", t0), reason: ReasonAllowed, match: 9},
		{name: "star crosses colons and dots", req: req("user.joe", "x", "sports:a.b:c", t0), reason: ReasonAllowed, match: 1},
		{name: "resource glob does not cross domains", req: req("user.joe", "x", "sportsx:a", t0), reason: ReasonUnknownDomain, match: -1},

		// Case.
		{name: "case-insensitive", req: req("USER.Jane", "READ", "SPORTS:Doc", t0), reason: ReasonAllowed, match: 0},
		{name: "case-insensitive glob", req: req("Sports.API", "GET", "Sports:FILE.(V1)[X]+Tail", t0), reason: ReasonAllowed, match: 4},

		// Token mode.
		{name: "token roles", req: token("Sports", []string{"READER"}, "read", "sports:doc"), reason: ReasonAllowed, match: 0},
		{name: "token ignores membership", req: Request{Principal: "user.joe", Action: "delete", Resource: "sports:protected", TokenDomain: "sports", Roles: []string{"reader"}}, reason: ReasonNoMatch, match: -1},
		{name: "token without roles", req: token("sports", nil, "read", "sports:doc"), reason: ReasonNotMember, match: -1},
		{name: "token with an unknown role", req: token("sports", []string{"nobody"}, "read", "sports:doc"), reason: ReasonNoMatch, match: -1},
		{name: "token role glob", req: token("sports", []string{"Writer"}, "write", "sports:doc"), reason: ReasonAllowed, match: 6},
		{name: "token DENY", req: token("sports", []string{"reader", "blocked"}, "read", "sports:doc"), reason: ReasonDenied, match: 8},
		{name: "token for another domain", req: token("weather", []string{"reader"}, "read", "sports:doc"), reason: ReasonDomainMismatch, match: -1},
		{name: "token for an unknown domain", req: token("weather", []string{"reader"}, "read", "weather:doc"), reason: ReasonUnknownDomain, match: -1},
		{name: "token needs no principal or time", req: Request{Action: "read", Resource: "sports:doc", TokenDomain: "sports", Roles: []string{"reader"}}, reason: ReasonAllowed, match: 0},

		// Invalid requests.
		{name: "unknown domain", req: req("user.joe", "read", "weather:doc", t0), reason: ReasonUnknownDomain, match: -1},
		{name: "empty action", req: req("user.joe", "", "sports:doc", t0), reason: ReasonInvalid, match: -1},
		{name: "resource without colon", req: req("user.joe", "read", "sportsdoc", t0), reason: ReasonInvalid, match: -1},
		{name: "resource with empty domain", req: req("user.joe", "read", ":doc", t0), reason: ReasonInvalid, match: -1},
		{name: "empty principal", req: req("", "read", "sports:doc", t0), reason: ReasonInvalid, match: -1},
		{name: "invalid before unknown domain", req: req("", "read", "weather:doc", t0), reason: ReasonInvalid, match: -1},
		{name: "time not RFC 3339", input: map[string]any{"principal": "user.joe", "action": "read", "resource": "sports:doc", "time": "yesterday"}, reason: ReasonInvalid, match: -1},
		{name: "time not a string", input: map[string]any{"principal": "user.joe", "action": "read", "resource": "sports:doc", "time": 5}, reason: ReasonInvalid, match: -1},
		{name: "action not a string", input: map[string]any{"principal": "user.joe", "action": 1, "resource": "sports:doc"}, reason: ReasonInvalid, match: -1},
		{name: "roles not a list", input: map[string]any{"action": "read", "resource": "sports:doc", "domain": "sports", "roles": "reader"}, reason: ReasonInvalid, match: -1},
		{name: "role not a string", input: map[string]any{"action": "read", "resource": "sports:doc", "domain": "sports", "roles": []any{"reader", 1}}, reason: ReasonInvalid, match: -1},
		{name: "token domain not a string", input: map[string]any{"principal": "user.joe", "action": "read", "resource": "sports:doc", "domain": true}, reason: ReasonInvalid, match: -1},
		{name: "empty token domain means no token", input: map[string]any{"principal": "user.joe", "action": "read", "resource": "sports:doc", "domain": "", "roles": []any{"reader"}}, reason: ReasonAllowed, match: 1},
		{name: "no input", input: map[string]any{}, reason: ReasonInvalid, match: -1},
		{name: "null time means now", input: map[string]any{"principal": "user.joe", "action": "read", "resource": "sports:doc", "time": nil}, reason: ReasonAllowed, match: 1},
		{name: "time with offset", input: map[string]any{"principal": "user.jane", "action": "read", "resource": "sports:doc", "time": "2026-01-01T01:00:00.000000001+01:00"}, reason: ReasonMemberExpired, match: -1},
	}
}

// TestRegoDecision runs the hand-built cases through the bundle's Rego in OPA and through
// the native evaluator.
func TestRegoDecision(t *testing.T) {
	c := regoWorld()
	rd := newRegoDecider(t, c)
	ev, err := NewEvaluator(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range decisionCases() {
		t.Run(tc.name, func(t *testing.T) {
			input := tc.input
			if input == nil {
				input = requestInput(tc.req)
			}
			got := rd.decide(t, input)
			if got.Reason != tc.reason || got.matchID() != tc.match || got.Allow != (tc.reason == ReasonAllowed) {
				t.Errorf("Rego: %v; want reason %s, match %d", got, tc.reason, tc.match)
			}
			if got.Match != nil {
				want := findAssertion(c, got.Domain, got.Match.ID)
				if want == nil || want.Policy != got.Match.Policy || want.Role != got.Match.Role || want.Action != got.Match.Action ||
					want.Resource != got.Match.Resource || want.Effect != got.Match.Effect {
					t.Errorf("Rego match %+v is not assertion %+v", *got.Match, want)
				}
			}
			if tc.input != nil {
				return
			}
			d := ev.Decide(tc.req)
			if d.Reason != tc.reason || matchID(d) != tc.match || d.Allowed != (tc.reason == ReasonAllowed) {
				t.Errorf("native: allowed %v, reason %s, match %d; want reason %s, match %d", d.Allowed, d.Reason, matchID(d), tc.reason, tc.match)
			}
		})
	}
}

func matchID(d Decision) int {
	if d.Match == nil {
		return -1
	}
	return d.Match.ID
}

func findAssertion(c *Compiled, domain string, id int) *CompiledAssertion {
	d := c.Domains[domain]
	if d == nil {
		return nil
	}
	var all []*CompiledAssertion
	for _, ai := range d.Actions {
		for _, list := range ai.Exact {
			all = append(all, list...)
		}
		all = append(all, ai.Globs...)
	}
	all = append(all, d.GlobActions...)
	for _, a := range all {
		if a.ID == id {
			return a
		}
	}
	return nil
}

// TestRegoDecisionOutput pins the full decision document.
func TestRegoDecisionOutput(t *testing.T) {
	rd := newRegoDecider(t, regoWorld())
	for _, tc := range []struct {
		name  string
		input map[string]any
		want  string
	}{
		{"allowed", map[string]any{"principal": "user.jane", "action": "read", "resource": "sports:doc", "time": "2026-01-01T00:00:00Z"},
			`{"allow":true,"domain":"sports","match":{"action":"read","effect":"ALLOW","id":0,"policy":"readers","resource":"sports:doc","role":"reader"},"reason":"allowed"}`},
		{"denied", map[string]any{"principal": "user.joe", "action": "delete", "resource": "sports:protected"},
			`{"allow":false,"domain":"sports","match":{"action":"delete","effect":"DENY","id":2,"policy":"admins","resource":"sports:protected","role":"admin"},"reason":"denied"}`},
		{"no match", map[string]any{"principal": "sports.api", "action": "write", "resource": "sports:doc"},
			`{"allow":false,"domain":"sports","reason":"no_match"}`},
		{"invalid without domain", map[string]any{"principal": "x", "action": "read", "resource": "doc"},
			`{"allow":false,"reason":"invalid_request"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := evalBindings(t, rd.pq, tc.input)
			got, err := json.Marshal(vars["decision"])
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("decision\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// envoyInput is opa-envoy-plugin's input for an Envoy request (protobuf JSON names;
// empty fields left out, as protojson does).
func envoyInput(r EnvoyRequest, snakeCase bool) map[string]any {
	httpReq := map[string]any{}
	for k, v := range map[string]string{"method": r.Method, "path": r.Path, "host": r.Host} {
		if v != "" {
			httpReq[k] = v
		}
	}
	attrs := map[string]any{"request": map[string]any{"http": httpReq}}
	if r.SourcePrincipal != "" {
		attrs["source"] = map[string]any{"principal": r.SourcePrincipal}
	}
	if len(r.ContextExtensions) > 0 {
		ext := map[string]any{}
		for k, v := range r.ContextExtensions {
			ext[k] = v
		}
		key := "contextExtensions"
		if snakeCase {
			key = "context_extensions"
		}
		attrs[key] = ext
	}
	var segments []any
	for s := range strings.SplitSeq(strings.TrimPrefix(r.Path, "/"), "/") {
		segments = append(segments, s)
	}
	return map[string]any{"attributes": attrs, "parsed_path": segments, "parsed_query": map[string]any{}}
}

// TestRegoMappingCases runs testdata/mapping through the bundle's envoy.authz Rego.
func TestRegoMappingCases(t *testing.T) {
	for file, f := range loadMappingFiles(t) {
		c := &Compiled{Revision: "mapping", Domains: map[string]*CompiledDomain{}, Mapping: f.Mapping}
		pq := regoQuery(t, c, "x := data.envoy.authz")
		for _, tc := range f.Cases {
			for _, snake := range []bool{false, true} {
				name := file + "/" + tc.Name
				if snake {
					name += "/snake_case"
				}
				t.Run(name, func(t *testing.T) {
					pkg, _ := evalBindings(t, pq, envoyInput(tc.envoyRequest(), snake))["x"].(map[string]any)
					var reason Reason
					if e, ok := pkg["mapping_error"]; ok {
						reason = Reason(e.(string))
					}
					if reason != tc.Reason {
						t.Fatalf("mapping_error = %q, want %q (mapped %v)", reason, tc.Reason, pkg["mapped"])
					}
					if tc.Want == nil {
						if m, ok := pkg["mapped"]; ok {
							t.Errorf("mapped = %v, want undefined", m)
						}
						if d, _ := pkg["decision"].(map[string]any); d["reason"] != string(tc.Reason) || pkg["allow"] != false {
							t.Errorf("decision = %v, allow = %v; want reason %s, false", d, pkg["allow"], tc.Reason)
						}
						return
					}
					var got MappedRequest
					convert(t, pkg["mapped"], &got)
					if got != *tc.Want {
						t.Errorf("mapped\n got %+v\nwant %+v", got, *tc.Want)
					}
				})
			}
		}
	}
}

// TestRegoEnvoyResult checks opa-envoy-plugin's entry points end to end.
func TestRegoEnvoyResult(t *testing.T) {
	pq := regoQuery(t, regoWorld(), "allow := data.envoy.authz.allow; result := data.envoy.authz.result")
	type result struct {
		Allowed              bool              `json:"allowed"`
		HTTPStatus           int               `json:"http_status"`
		Headers              map[string]string `json:"headers"`
		ResponseHeadersToAdd map[string]string `json:"response_headers_to_add"`
		Body                 string            `json:"body"`
		Decision             regoDecision      `json:"decision"`
	}
	api := "spiffe://sports/sa/api"
	for _, tc := range []struct {
		name    string
		req     EnvoyRequest
		allowed bool
		reason  Reason
	}{
		{"allowed", EnvoyRequest{Method: "GET", Path: "/doc?x=1", SourcePrincipal: api, ContextExtensions: map[string]string{ContextAction: "read", ContextResource: "doc"}}, true, ReasonAllowed},
		{"no match", EnvoyRequest{Method: "DELETE", Path: "/doc", SourcePrincipal: api}, false, ReasonNoMatch},
		{"Athenz namespaced form in a trusted trust domain", EnvoyRequest{Method: "get", Path: "/x", SourcePrincipal: "spiffe://athenz.test/ns/a/sa/user.joe"}, true, ReasonAllowed},
		{"the same form in Istio's trust domain", EnvoyRequest{Method: "get", Path: "/x", SourcePrincipal: "spiffe://cluster.local/ns/a/sa/user.joe"}, false, ReasonUnknownPrincipal},
		{"unknown principal", EnvoyRequest{Method: "GET", Path: "/doc", SourcePrincipal: "spiffe://cluster.local/ns/a/sa/b"}, false, ReasonUnknownPrincipal},
		{"invalid request", EnvoyRequest{Path: "/doc", SourcePrincipal: api}, false, ReasonInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := evalBindings(t, pq, envoyInput(tc.req, false))
			var got result
			convert(t, vars["result"], &got)
			if vars["allow"] != tc.allowed || got.Allowed != tc.allowed || got.Decision.Reason != tc.reason {
				t.Fatalf("allow %v, result %+v; want %v, %s", vars["allow"], got, tc.allowed, tc.reason)
			}
			if tc.allowed {
				if got.HTTPStatus != 200 || len(got.Headers) != 0 || got.Body != "" {
					t.Errorf("allowed result %+v", got)
				}
				return
			}
			wantBody := fmt.Sprintf(`{"allowed":false,"reason":%q}`, tc.reason)
			if got.HTTPStatus != 403 || got.Headers["x-athenz-reason"] != string(tc.reason) ||
				got.Headers["content-type"] != "application/json" || got.Body != wantBody {
				t.Errorf("denied result %+v, want 403 with reason %s and body %s", got, tc.reason, wantBody)
			}
		})
	}
}

// TestOPAFileDigests holds fileDigest equal to OPA's hashing of bundle files.
func TestOPAFileDigests(t *testing.T) {
	tricky := &Compiled{
		Revision: "r",
		Domains: map[string]*CompiledDomain{
			"d<&>": {Roles: []string{"é", "\u2028", "\"quoted\"\\", "\x01ctl", "emoji😀", "tab\t"}, Members: map[string]map[string]int64{"a": {"b": 1<<62 + 1, "c": -5}}},
		},
	}
	files, err := bundleFiles(tricky)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := bundle.NewSignatureHasher(bundle.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			var v any = content
			if bundle.IsStructuredDoc(name) {
				if err := util.Unmarshal(content, &v); err != nil {
					t.Fatal(err)
				}
			}
			want, err := hasher.HashFile(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fileDigest(name, content, fileHashAlgorithm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("digest %s, OPA %s", hex.EncodeToString(got), hex.EncodeToString(want))
			}
		})
	}
}

// TestOPAVerifiesBundle has OPA's bundle reader verify signed bundles and refuse tampered
// ones.
func TestOPAVerifiesBundle(t *testing.T) {
	ec, ec2, rs := testKeys(t)
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		verify crypto.Signer
		alg    string
		tamper bool
		ok     bool
	}{
		{"ES256", ec, ec, "ES256", false, true},
		{"RS256", rs, rs, "RS256", false, true},
		{"ES256 tampered", ec, ec, "ES256", true, false},
		{"ES256 other key", ec, ec2, "ES256", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := writeBundle(t, regoWorld(), BundleOptions{SigningKey: tc.key})
			if tc.tamper {
				entries := editEntries(entriesOf(t, raw), func(e *tarEntry) bool {
					if e.name == dataFile {
						e.body = bytes.Replace(e.body, []byte(`"user.joe"`), []byte(`"user.eve"`), 1)
					}
					return true
				})
				raw = makeTarGz(t, entries)
			}
			b, err := opaBundle(t, raw, publicPEM(t, tc.verify.Public()), tc.alg)
			if tc.ok != (err == nil) {
				t.Fatalf("OPA read: %v, want ok=%v", err, tc.ok)
			}
			if err == nil && b.Manifest.Revision != "world-1" {
				t.Errorf("revision %q", b.Manifest.Revision)
			}
		})
	}
}

// opaBinary finds the opa executable: $OPA_BIN, else opa on PATH.
func opaBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("OPA_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("opa"); err == nil {
		return p
	}
	t.Skip("no opa binary: set OPA_BIN or put opa on PATH (GOBIN=<dir> go install github.com/open-policy-agent/opa@v1.22.2)")
	return ""
}

// runOPA runs opa with args in dir and returns its combined output and error.
func runOPA(t *testing.T, opa, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, opa, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOPABinary checks the bundle against a real opa: signature verification (opa build
// and opa run --verification-key), evaluation (opa eval, opa run --server), and bundles
// signed by opa itself read back by ReadBundle.
func TestOPABinary(t *testing.T) {
	opa := opaBinary(t)
	if out, err := runOPA(t, opa, "", "version"); err != nil {
		t.Fatalf("opa version: %v\n%s", err, out)
	} else {
		t.Logf("%s: %s", opa, strings.SplitN(out, "\n", 2)[0])
	}
	ec, ec2, rs := testKeys(t)
	dir := t.TempDir()
	writeFile(t, dir, "ec.pem", publicPEM(t, ec.Public()))
	writeFile(t, dir, "ec2.pem", publicPEM(t, ec2.Public()))
	writeFile(t, dir, "rsa.pem", publicPEM(t, rs.Public()))
	writeFile(t, dir, "ec-key.pem", privatePEM(t, ec))
	writeFile(t, dir, "rsa-key.pem", privatePEM(t, rs))
	signed := writeBundle(t, regoWorld(), BundleOptions{SigningKey: ec})
	writeFile(t, dir, "signed.tar.gz", signed)
	writeFile(t, dir, "rsa.tar.gz", writeBundle(t, regoWorld(), BundleOptions{SigningKey: rs}))
	writeFile(t, dir, "tampered.tar.gz", makeTarGz(t, editEntries(entriesOf(t, signed), func(e *tarEntry) bool {
		if e.name == dataFile {
			e.body = bytes.Replace(e.body, []byte(`"user.jane"`), []byte(`"user.evil"`), 1)
		}
		return true
	})))

	t.Run("build verifies", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			fail string // "" when opa must accept the bundle
		}{
			{"ES256", []string{"-b", "signed.tar.gz", "--verification-key", "ec.pem", "--signing-alg", "ES256"}, ""},
			{"RS256 (opa's default algorithm)", []string{"-b", "rsa.tar.gz", "--verification-key", "rsa.pem"}, ""},
			{"tampered", []string{"-b", "tampered.tar.gz", "--verification-key", "ec.pem", "--signing-alg", "ES256"}, "data.json: digest mismatch"},
			{"other key", []string{"-b", "signed.tar.gz", "--verification-key", "ec2.pem", "--signing-alg", "ES256"}, "failed to verify"},
			{"wrong scope", []string{"-b", "signed.tar.gz", "--verification-key", "ec.pem", "--signing-alg", "ES256", "--scope", "x"}, "scope mismatch"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"build", "-o", filepath.Join(t.TempDir(), "out.tar.gz")}, tc.args...)
				out, err := runOPA(t, opa, dir, args...)
				if tc.fail == "" && err != nil {
					t.Fatalf("opa build refused the bundle: %v\n%s", err, out)
				}
				if tc.fail != "" && (err == nil || !strings.Contains(out, tc.fail)) {
					t.Fatalf("opa build: %v, want a failure mentioning %q\n%s", err, tc.fail, out)
				}
			})
		}
	})

	t.Run("eval", func(t *testing.T) {
		rd := newRegoDecider(t, regoWorld())
		for i, tc := range decisionCases() {
			if i%3 != 0 { // a sample: each opa eval costs a process
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				input := tc.input
				if input == nil {
					input = requestInput(tc.req)
				}
				in, err := json.Marshal(input)
				if err != nil {
					t.Fatal(err)
				}
				inPath := writeFile(t, t.TempDir(), "input.json", in)
				out, err := runOPA(t, opa, dir, "eval", "-b", "signed.tar.gz", "-i", inPath, "-f", "raw", "data.athenz.authz.decision")
				if err != nil {
					t.Fatalf("opa eval: %v\n%s", err, out)
				}
				var got regoDecision
				convert(t, json.RawMessage(out), &got)
				if want := rd.decide(t, input); got.String() != want.String() {
					t.Errorf("opa eval: %v; the library says %v", got, want)
				}
				if got.Reason != tc.reason || got.matchID() != tc.match {
					t.Errorf("opa eval: %v; want reason %s, match %d", got, tc.reason, tc.match)
				}
			})
		}
	})

	t.Run("envoy eval", func(t *testing.T) {
		in, _ := json.Marshal(envoyInput(EnvoyRequest{Method: "GET", Path: "/doc", SourcePrincipal: "spiffe://sports/sa/api",
			ContextExtensions: map[string]string{ContextAction: "read", ContextResource: "doc"}}, false))
		inPath := writeFile(t, t.TempDir(), "input.json", in)
		out, err := runOPA(t, opa, dir, "eval", "-b", "signed.tar.gz", "-i", inPath, "-f", "raw", "data.envoy.authz.result.http_status")
		if err != nil || strings.TrimSpace(out) != "200" {
			t.Fatalf("opa eval data.envoy.authz.result.http_status = %q, %v; want 200", out, err)
		}
	})

	t.Run("bundles signed by opa", func(t *testing.T) {
		src := filepath.Join(dir, "src")
		for _, e := range entriesOf(t, writeBundle(t, regoWorld(), BundleOptions{})) {
			writeFile(t, src, e.name, e.body)
		}
		for _, tc := range []struct {
			name string
			args []string
			pub  crypto.PublicKey
		}{
			{"ES256", []string{"--signing-key", filepath.Join(dir, "ec-key.pem"), "--signing-alg", "ES256"}, ec.Public()},
			{"RS256", []string{"--signing-key", filepath.Join(dir, "rsa-key.pem")}, rs.Public()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "opa.tar.gz")
				if msg, err := runOPA(t, opa, src, append([]string{"build", "-b", ".", "-o", out}, tc.args...)...); err != nil {
					t.Fatalf("opa build: %v\n%s", err, msg)
				}
				raw, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				b, err := ReadBundle(bytes.NewReader(raw), ReadOptions{VerificationKeys: map[string]crypto.PublicKey{"default": tc.pub}})
				if err != nil {
					t.Fatalf("ReadBundle of opa's bundle: %v", err)
				}
				if b.KeyID != "default" || b.Revision != "world-1" {
					t.Errorf("KeyID %q, revision %q", b.KeyID, b.Revision)
				}
			})
		}
	})

	t.Run("run server", func(t *testing.T) {
		t.Run("verified", func(t *testing.T) {
			addr := startOPAServer(t, opa, dir, "signed.tar.gz")
			in := map[string]any{"input": requestInput(Request{Principal: "user.jane", Action: "read", Resource: "sports:doc", Time: testT0})}
			body, _ := json.Marshal(in)
			resp, err := http.Post("http://"+addr+"/v1/data/athenz/authz/allow", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Result *bool `json:"result"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.Result == nil || !*got.Result {
				t.Errorf("POST /v1/data/athenz/authz/allow: %v, want true", got.Result)
			}
		})
		t.Run("tampered", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, opa, "run", "--server", "--addr", "127.0.0.1:"+freePort(t), "--bundle",
				"--verification-key", "ec.pem", "--signing-alg", "ES256", "tampered.tar.gz")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "digest mismatch") {
				t.Fatalf("opa run on a tampered bundle: %v, want an exit mentioning the digest\n%s", err, out)
			}
		})
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// startOPAServer runs `opa run --server` on bundle with signature verification and waits
// until its health endpoint reports the bundle activated. The server is stopped at the
// end of the test.
func startOPAServer(t *testing.T, opa, dir, bundleFile string) string {
	t.Helper()
	addr := "127.0.0.1:" + freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(opa, "run", "--server", "--addr", addr, "--log-level", "error", "--bundle",
		"--verification-key", "ec.pem", "--signing-alg", "ES256", bundleFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("opa run exited: %v\n%s", err, logs.String())
		case <-deadline.C:
			t.Fatalf("opa run not healthy after 30s\n%s", logs.String())
		case <-tick.C:
			resp, err := http.Get("http://" + addr + "/health?bundles")
			if err != nil {
				var opErr *net.OpError
				if errors.As(err, &opErr) {
					continue // not listening yet
				}
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
	}
}
