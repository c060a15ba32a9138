package authz

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

func TestCacheNeverOutlivesMembership(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Decision.Cache.MaxTTL = 2 * time.Hour
	clock := &fakeClock{now: t0}
	ts := startServer(t, cfg, Deps{Now: clock.Now})
	ts.waitReady(t)
	hits := func() float64 { return metricValue(t, ts.reg, "athenz_mesh_authz_decision_cache_hits_total", nil) }
	misses := func() float64 { return metricValue(t, ts.reg, "athenz_mesh_authz_decision_cache_misses_total", nil) }

	expiring := newPeer(t, "sports.expiring", "spiffe://sports/sa/expiring")
	req := envoyReq{path: "/public/x", peer: &expiring, ext: map[string]string{"athenz.domain": "sports"}}.build()
	steps := []struct {
		at             time.Time
		allowed        bool
		reason         string
		hits, misses   float64
		rolesHeaderVal string
	}{
		{t0, true, "allowed", 0, 1, "readers"},
		{t0.Add(30 * time.Minute), true, "allowed", 1, 1, "readers"},
		// The membership counts up to and including its expiry instant...
		{t0.Add(time.Hour), true, "allowed", 2, 1, "readers"},
		// ...and not a nanosecond later, although the max TTL has not passed.
		{t0.Add(time.Hour + time.Nanosecond), false, "member_expired", 2, 2, ""},
	}
	for i, s := range steps {
		clock.Set(s.at)
		a := flatten(t, ts.check(t, req))
		if a.allowed != s.allowed || a.meta["reason"] != s.reason {
			t.Fatalf("step %d at %s: allowed=%v reason=%v, want %v %s", i, s.at, a.allowed, a.meta["reason"], s.allowed, s.reason)
		}
		if s.allowed && a.headers["x-athenz-roles"] != s.rolesHeaderVal {
			t.Errorf("step %d: roles %q, want %q", i, a.headers["x-athenz-roles"], s.rolesHeaderVal)
		}
		if hits() != s.hits || misses() != s.misses {
			t.Errorf("step %d: hits %v misses %v, want %v %v", i, hits(), misses(), s.hits, s.misses)
		}
	}

	// A decision that depends on no expiry is still dropped after the max TTL.
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	req = envoyReq{path: "/public/x", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()
	base := misses()
	clock.Set(t0)
	ts.check(t, req)
	clock.Set(t0.Add(2 * time.Hour))
	ts.check(t, req)
	if misses() != base+1 {
		t.Errorf("served from cache within max TTL: misses %v, want %v", misses(), base+1)
	}
	clock.Set(t0.Add(2*time.Hour + time.Nanosecond))
	ts.check(t, req)
	if misses() != base+2 {
		t.Errorf("served from cache past max TTL: misses %v, want %v", misses(), base+2)
	}
}

func TestCacheKey(t *testing.T) {
	base := policy.Request{Principal: "sports.api", Action: "get", Resource: "sports:/x"}
	token := policy.Request{TokenDomain: "sports", Roles: []string{"b", "a"}, Action: "get", Resource: "sports:/x"}
	same := []struct {
		name string
		a, b policy.Request
	}{
		{"case", base, policy.Request{Principal: "Sports.API", Action: "GET", Resource: "SPORTS:/X"}},
		{"token role order", token, policy.Request{TokenDomain: "sports", Roles: []string{"a", "b"}, Action: "get", Resource: "sports:/x"}},
		{"token principal ignored", token, policy.Request{Principal: "x.y", TokenDomain: "sports", Roles: []string{"a", "b"}, Action: "get", Resource: "sports:/x"}},
	}
	for _, c := range same {
		if cacheKey("r", &c.a) != cacheKey("r", &c.b) {
			t.Errorf("%s: keys differ", c.name)
		}
	}
	differ := []policy.Request{
		{Principal: "sports.api2", Action: "get", Resource: "sports:/x"},
		{Principal: "sports.api", Action: "put", Resource: "sports:/x"},
		{Principal: "sports.api", Action: "get", Resource: "sports:/y"},
		{TokenDomain: "sports", Roles: []string{"a"}, Action: "get", Resource: "sports:/x"},
		{TokenDomain: "sports", Roles: []string{"a,b"}, Action: "get", Resource: "sports:/x"},
		{TokenDomain: "sports.api", Action: "get", Resource: "sports:/x"},
	}
	seen := map[string]bool{cacheKey("r", &base): true, cacheKey("r", &token): true}
	for _, r := range differ {
		k := cacheKey("r", &r)
		if seen[k] {
			t.Errorf("%+v shares a key", r)
		}
		seen[k] = true
	}
	if cacheKey("r1", &base) == cacheKey("r2", &base) {
		t.Error("revision not in the key")
	}
	if !slicesEqual(token.Roles, []string{"b", "a"}) {
		t.Error("cacheKey sorted the caller's roles in place")
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestDryRun(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Decision.DryRun = true
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	stranger := newPeer(t, "sports.stranger", "spiffe://sports/sa/stranger")
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	ext := map[string]string{"athenz.domain": "sports"}
	cases := []struct {
		name, dryRun, reason string
		req                  envoyReq
	}{
		{"would deny", "deny", "not_member", envoyReq{path: "/public/x", peer: &stranger, ext: ext}},
		{"would deny by assertion", "deny", "denied", envoyReq{path: "/public/secret", peer: &api, ext: ext}},
		{"would be unauthenticated", "unauthenticated", ReasonNoCredentials, envoyReq{path: "/public/x", ext: ext}},
		{"allowed anyway", "", "allowed", envoyReq{path: "/public/x", peer: &api, ext: ext}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := flatten(t, ts.check(t, tc.req.build()))
			if !a.allowed {
				t.Fatalf("dry-run denied: %+v", a)
			}
			if a.headers[HeaderDryRun] != tc.dryRun {
				t.Errorf("%s = %q, want %q", HeaderDryRun, a.headers[HeaderDryRun], tc.dryRun)
			}
			if tc.dryRun != "" && a.headers[HeaderDryRunReason] != tc.reason {
				t.Errorf("%s = %q, want %q", HeaderDryRunReason, a.headers[HeaderDryRunReason], tc.reason)
			}
			if tc.dryRun != "" && (a.meta["dry_run"] != true || a.headers["x-athenz-principal"] != "") {
				t.Errorf("metadata %v headers %v", a.meta, a.headers)
			}
		})
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_decisions_total", map[string]string{"result": "dry_run_deny"}); v != 3 {
		t.Errorf("dry_run_deny = %v, want 3", v)
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_decisions_total", map[string]string{"result": "deny"}); v != 0 {
		t.Errorf("deny = %v, want 0 in dry-run", v)
	}
}

func TestExplain(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Decision.Explain.Principals = []string{"sports.admin"}
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	admin := newPeer(t, "sports.admin", "spiffe://sports/sa/admin")
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	ask := map[string]string{DefaultExplainHeader: "1"}
	ext := map[string]string{"athenz.domain": "sports"}

	a := flatten(t, ts.check(t, envoyReq{path: "/public/x", peer: &admin, ext: ext, headers: ask}.build()))
	var x policy.Explanation
	if !a.allowed || json.Unmarshal([]byte(a.clientHeaders[HeaderExplanation]), &x) != nil {
		t.Fatalf("allowed explanation: %+v", a)
	}
	if x.Principal != "sports.admin" || len(x.Matches) != 1 || x.Matches[0].Policy != "write" || len(x.Roles) != 1 || x.Roles[0].Role != "writers" {
		t.Errorf("explanation %+v", x)
	}
	if a.headers["x-athenz-roles"] != "writers" {
		t.Errorf("roles header %q on an explained request", a.headers["x-athenz-roles"])
	}

	a = flatten(t, ts.check(t, envoyReq{method: "DELETE", path: "/public/x", peer: &admin, ext: ext, headers: ask}.build()))
	var body struct {
		Reason      string              `json:"reason"`
		Explanation *policy.Explanation `json:"explanation"`
	}
	if a.allowed || json.Unmarshal([]byte(a.body), &body) != nil || body.Explanation == nil || body.Explanation.Reason != policy.ReasonNoMatch {
		t.Fatalf("denied explanation: %+v", a)
	}
	if _, ok := a.headers[HeaderExplanation]; ok {
		t.Error("a denial carries the explanation in a header too")
	}

	a = flatten(t, ts.check(t, envoyReq{path: "/public/x", peer: &api, ext: ext, headers: ask}.build()))
	if _, ok := a.clientHeaders[HeaderExplanation]; !a.allowed || ok {
		t.Errorf("a principal not in explain.principals got an explanation: %+v", a)
	}
}

func TestBypass(t *testing.T) {
	cfg, _, path := fileServerConfig(t)
	good := readFile(t, path)
	removeFile(t, path) // no bundle: bypassed paths must still pass
	cfg.Bundle.PollInterval = 5 * time.Millisecond
	cfg.Decision.Bypass = BypassConfig{Paths: []string{"/healthz"}, PathPrefixes: []string{"/.well-known/"}}
	ts := startServer(t, cfg, Deps{})
	for _, tc := range []struct {
		path   string
		bypass bool
	}{
		{"/healthz", true},
		{"/healthz?full=1", true},
		{"/.well-known/openid-configuration", true},
		{"/healthz/", false},
		{"/healthzx", false},
		{"/healthz/../admin", false},
		{"/.well-known/../admin", false},
		{"/.well-known/%2e%2e/admin", false},
		{"/.well-known//admin", false},
		{"/.well-known/..", false},
		{"/admin", false},
	} {
		a := flatten(t, ts.check(t, envoyReq{path: tc.path, headers: map[string]string{"x-athenz-principal": "sports.admin"}}.build()))
		if a.allowed != tc.bypass {
			t.Errorf("%s: allowed=%v, want bypass=%v (%+v)", tc.path, a.allowed, tc.bypass, a)
		}
		if tc.bypass && !contains(a.remove, "x-athenz-principal") {
			t.Errorf("%s: a bypassed request keeps the client's identity header (remove %v)", tc.path, a.remove)
		}
		if !tc.bypass && a.status != 503 {
			t.Errorf("%s: status %d, want 503 (no bundle yet)", tc.path, a.status)
		}
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_decisions_total", map[string]string{"result": "allow", "reason": "bypass"}); v != 3 {
		t.Errorf("bypass count %v, want 3", v)
	}
	writeFileAtomic(t, path, good)
	ts.waitReady(t)
}

// TestMapTargetAgreesWithMap runs policy's mapping cases through mapTarget: wherever Map
// maps a request, mapTarget must give the same domain, action and resource, and where Map
// finds no domain, mapTarget must say so too.
func TestMapTargetAgreesWithMap(t *testing.T) {
	paths, err := filepath.Glob("../policy/testdata/mapping/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no mapping cases: %v", err)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(doc)
		var file struct {
			Mapping *policy.Mapping `json:"mapping"`
			Cases   []struct {
				Name    string `json:"name"`
				Request struct {
					Method, Path, Host, Principal string
					ContextExtensions             map[string]string `json:"context_extensions"`
				} `json:"request"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(js, &file); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, c := range file.Cases {
			r := c.Request
			want, reason := file.Mapping.Map(policy.EnvoyRequest{Method: r.Method, Path: r.Path, Host: r.Host, SourcePrincipal: r.Principal, ContextExtensions: r.ContextExtensions})
			got, gotReason := mapTarget(file.Mapping, &Input{Method: r.Method, Path: r.Path, Host: r.Host, SourcePrincipal: r.Principal, ContextExtensions: r.ContextExtensions})
			switch reason {
			case "":
				if gotReason != "" || got.Domain != want.Domain || got.Action != want.Action || got.Resource != want.Resource {
					t.Errorf("%s/%s: mapTarget %+v %q, Map %+v", filepath.Base(p), c.Name, got, gotReason, want)
				}
			case policy.ReasonInvalid:
				if gotReason != policy.ReasonInvalid {
					t.Errorf("%s/%s: mapTarget %q, Map invalid_request", filepath.Base(p), c.Name, gotReason)
				}
			}
		}
	}
}

// TestConcurrentChecksDuringSwaps checks from many goroutines while bundles swap: under
// -race this proves the store, cache and metrics are safe, and every answer must be one
// of the two bundles' answers.
func TestConcurrentChecksDuringSwaps(t *testing.T) {
	cfg, k1, path := fileServerConfig(t)
	cfg.Bundle.PollInterval = time.Millisecond
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	dataA := readFile(t, path)
	dataB, _ := bundle(t, k1, world("sports.newbie"))
	peers := []peer{newPeer(t, "sports.api", "spiffe://sports/sa/api"), newPeer(t, "sports.newbie", "spiffe://sports/sa/newbie")}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for g := range 8 {
		wg.Go(func() {
			p := peers[g%2]
			req := envoyReq{path: "/public/x", peer: &p, ext: map[string]string{"athenz.domain": "sports"}}.build()
			for ctx.Err() == nil {
				resp, err := ts.tcp.Check(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				reason := resp.GetDynamicMetadata().AsMap()["reason"]
				if reason != "allowed" && !(g%2 == 1 && reason == "not_member") {
					t.Errorf("peer %s: reason %v", p.principal, reason)
					return
				}
			}
		})
	}
	for i := range 10 {
		data := dataA
		if i%2 == 0 {
			data = dataB
		}
		loads := metricValue(t, ts.reg, "athenz_mesh_authz_bundle_loads_total", nil)
		writeFileAtomic(t, path, data)
		ts.waitStatus(t, "a swap", func(StoreStatus) bool {
			return metricValue(t, ts.reg, "athenz_mesh_authz_bundle_loads_total", nil) > loads
		})
	}
	cancel()
	wg.Wait()
}

// countingCallers counts Authenticate calls.
type countingCallers struct {
	n    atomic.Int64
	next CallerSource
}

func (c *countingCallers) Authenticate(ctx context.Context, in *Input) (Caller, error) {
	c.n.Add(1)
	return c.next.Authenticate(ctx, in)
}

func TestPeerCachingCallers(t *testing.T) {
	a, err := NewAuthenticator(CredentialsConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	counter := &countingCallers{next: a}
	c := newPeerCachingCallers(counter)
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	admin := newPeer(t, "sports.admin", "spiffe://sports/sa/admin")
	ctx := context.Background()
	steps := []struct {
		in        *Input
		principal string
		err       string
		calls     int64
	}{
		{&Input{SourcePrincipal: api.principal, SourceCertificate: api.certURL}, "sports.api", "", 1},
		{&Input{SourcePrincipal: api.principal, SourceCertificate: api.certURL}, "sports.api", "", 1},
		{&Input{SourcePrincipal: admin.principal, SourceCertificate: admin.certURL}, "sports.admin", "", 2},
		// The same certificate under another principal is another key (and a mismatch).
		{&Input{SourcePrincipal: admin.principal, SourceCertificate: api.certURL}, "", ReasonPrincipalMismatch, 3},
		{&Input{SourcePrincipal: admin.principal, SourceCertificate: api.certURL}, "", ReasonPrincipalMismatch, 3},
		// Token headers bypass the cache.
		{&Input{SourcePrincipal: api.principal, SourceCertificate: api.certURL, Headers: map[string]string{"authorization": "Basic x"}}, "sports.api", "", 4},
		{&Input{SourcePrincipal: api.principal, SourceCertificate: api.certURL, Headers: map[string]string{"athenz-role-auth": "v=Z1"}}, "sports.api", "", 5},
		{&Input{}, "", ReasonNoCredentials, 6},
	}
	for i, s := range steps {
		got, err := c.Authenticate(ctx, s.in)
		var ce *CredentialError
		switch {
		case s.err != "" && (!errors.As(err, &ce) || ce.Reason != s.err):
			t.Errorf("step %d: err %v, want %s", i, err, s.err)
		case s.err == "" && (err != nil || got.Principal != s.principal):
			t.Errorf("step %d: %+v %v, want %s", i, got, err, s.principal)
		}
		if counter.n.Load() != s.calls {
			t.Errorf("step %d: %d calls to the authenticator, want %d", i, counter.n.Load(), s.calls)
		}
	}
}

func TestDenialBody(t *testing.T) {
	c := &checker{cfg: resolveDecision(DecisionConfig{})}
	for _, r := range []*Result{
		{Outcome: OutcomeDeny, Reason: "not_member", DecisionID: "abc-1", Status: 403},
		{Outcome: OutcomeUnauthenticated, Reason: `we"ird\reason<>`, DecisionID: "abc-2", Status: 401},
	} {
		c.answer(r)
		var got denialBody
		if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
			t.Fatalf("body %q: %v", r.Body, err)
		}
		if got.Allowed || got.Reason != r.Reason || got.DecisionID != r.DecisionID || got.Decision != r.Outcome.String() {
			t.Errorf("body %s for %+v", r.Body, r)
		}
	}
}
