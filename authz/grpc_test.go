package authz

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// answer is a CheckResponse flattened for comparison.
type answer struct {
	code          codes.Code
	allowed       bool
	status        int               // denied or error response status
	headers       map[string]string // upstream headers (allowed) or client headers (denied)
	remove        []string          // headers_to_remove
	clientHeaders map[string]string // response_headers_to_add (allowed)
	body          string
	meta          map[string]any
	errorResponse bool
}

func flatten(t *testing.T, resp *authv3.CheckResponse) answer {
	t.Helper()
	a := answer{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}, clientHeaders: map[string]string{}}
	if md := resp.GetDynamicMetadata(); md != nil {
		a.meta = md.AsMap()
	}
	hdrs := func(dst map[string]string, opts []*corev3.HeaderValueOption) {
		for _, o := range opts {
			if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s: append action %v, want OVERWRITE_IF_EXISTS_OR_ADD", o.GetHeader().GetKey(), o.GetAppendAction())
			}
			dst[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
	}
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.allowed = true
		hdrs(a.headers, hr.OkResponse.GetHeaders())
		hdrs(a.clientHeaders, hr.OkResponse.GetResponseHeadersToAdd())
		a.remove = hr.OkResponse.GetHeadersToRemove()
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(hr.DeniedResponse.GetStatus().GetCode())
		hdrs(a.headers, hr.DeniedResponse.GetHeaders())
		a.body = hr.DeniedResponse.GetBody()
	case *authv3.CheckResponse_ErrorResponse:
		a.errorResponse = true
		a.status = int(hr.ErrorResponse.GetStatus().GetCode())
		hdrs(a.headers, hr.ErrorResponse.GetHeaders())
		a.body = hr.ErrorResponse.GetBody()
	default:
		t.Fatalf("no http_response in %v", resp)
	}
	if a.allowed != (a.code == codes.OK) {
		t.Errorf("status code %v with allowed=%v", a.code, a.allowed)
	}
	return a
}

// fileServerConfig is a config reading a signed bundle from a file.
func fileServerConfig(t testing.TB) (Config, *signer, string) {
	t.Helper()
	dir := t.TempDir()
	s := newSigner(t, dir, "k1")
	data, _ := bundle(t, s, world(""))
	path := filepath.Join(dir, "bundle.tar.gz")
	writeFileAtomic(t, path, data)
	cfg := Config{Bundle: BundleConfig{File: path, VerificationKeys: []VerificationKey{{KeyID: "k1", File: s.pubFile}}}}
	return cfg, s, path
}

func TestCheckGRPC(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Decision.StripToken = true
	ts := startServer(t, cfg, Deps{NewCallers: newTokenCallers})
	ts.waitReady(t)

	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	stranger := newPeer(t, "sports.stranger", "spiffe://sports/sa/stranger")
	istio := newPeer(t, "api", "spiffe://cluster.local/ns/default/sa/api")
	sports := map[string]string{"athenz.domain": "sports"}

	type want struct {
		code    codes.Code
		status  int
		reason  string
		headers map[string]string // must be present with these values
		remove  []string          // must be in headers_to_remove
	}
	cases := []struct {
		name string
		req  *authv3.CheckRequest
		want want
	}{
		{"mtls member allowed", envoyReq{path: "/public/scores", peer: &api, ext: sports}.build(),
			want{code: codes.OK, reason: "allowed", headers: map[string]string{"x-athenz-principal": "sports.api", "x-athenz-domain": "sports", "x-athenz-roles": "readers"}}},
		{"deny assertion wins over allow", envoyReq{path: "/public/secret", peer: &api, ext: sports}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "denied", headers: map[string]string{"x-athenz-decision": "deny", "content-type": "application/json"}}},
		{"no assertion matches", envoyReq{method: "POST", path: "/public/x", peer: &api, ext: sports}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "no_match"}},
		{"not a member", envoyReq{path: "/public/x", peer: &stranger, ext: sports}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "not_member"}},
		{"unknown domain", envoyReq{path: "/x", peer: &api, ext: map[string]string{"athenz.domain": "nope"}}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "unknown_domain"}},
		{"host table picks the domain", envoyReq{path: "/videos", host: "media.example.com", peer: &api}.build(),
			want{code: codes.OK, reason: "allowed", headers: map[string]string{"x-athenz-domain": "media", "x-athenz-roles": "viewers"}}},
		{"nothing names a domain", envoyReq{path: "/x", host: "other.example.com", peer: &api}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "invalid_request"}},
		{"istio identity without a mapping", envoyReq{path: "/public/x", peer: &istio, ext: sports}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "unknown_principal"}},
		{"no credential at all", envoyReq{path: "/public/x", ext: sports}.build(),
			want{code: codes.Unauthenticated, status: 401, headers: map[string]string{"x-athenz-decision": "unauthenticated"}}},
		{"missing attributes", &authv3.CheckRequest{},
			want{code: codes.Unauthenticated, status: 401}},
		{"not an HTTP request", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Principal: api.principal}}},
			want{code: codes.PermissionDenied, status: 403, reason: "invalid_request"}},
		{"garbage peer certificate", envoyReq{path: "/public/x", peer: &peer{principal: api.principal, certURL: "-----BEGIN%20CERTIFICATE-----%0AZm9v%0A-----END%20CERTIFICATE-----%0A"}, ext: sports}.build(),
			want{code: codes.Unauthenticated, status: 401, reason: ReasonCertificateMalformed}},
		{"source principal not in the certificate", envoyReq{path: "/public/x", peer: &peer{principal: "spiffe://sports/sa/admin", certURL: api.certURL}, ext: sports}.build(),
			want{code: codes.Unauthenticated, status: 401, reason: ReasonPrincipalMismatch}},
		{"oversized headers", envoyReq{path: "/public/x", peer: &api, ext: sports, headers: map[string]string{"x-big": strings.Repeat("a", 70<<10)}}.build(),
			want{code: codes.PermissionDenied, status: 431, reason: "headers_too_large"}},
		{"client-sent identity headers are overwritten", envoyReq{path: "/public/x", peer: &api, ext: sports, headers: map[string]string{"x-athenz-principal": "sports.admin", "x-athenz-roles": "writers"}}.build(),
			want{code: codes.OK, reason: "allowed", headers: map[string]string{"x-athenz-principal": "sports.api", "x-athenz-roles": "readers"}}},
		{"method and path match case-insensitively", envoyReq{method: "GET", path: "/PUBLIC/Scores", peer: &api, ext: sports}.build(),
			want{code: codes.OK, reason: "allowed"}},
		{"query string is not part of the resource", envoyReq{path: "/public/scores?x=/secret", peer: &api, ext: sports}.build(),
			want{code: codes.OK, reason: "allowed"}},
		{"token caller", envoyReq{method: "POST", path: "/admin/reload", ext: sports, headers: map[string]string{"x-test-token": "sports:writers", "authorization": "Bearer x"}}.build(),
			want{code: codes.OK, reason: "allowed", headers: map[string]string{"x-athenz-domain": "sports", "x-athenz-roles": "writers"}, remove: []string{"x-athenz-principal", "authorization"}}},
		{"token caller's principal goes upstream", envoyReq{path: "/public/x", ext: sports, headers: map[string]string{"x-test-token": "sports:readers", "x-test-sub": "sports.batch"}}.build(),
			want{code: codes.OK, reason: "allowed", headers: map[string]string{"x-athenz-principal": "sports.batch", "x-athenz-roles": "readers"}}},
		{"token roles win over the peer's membership", envoyReq{method: "POST", path: "/admin/reload", peer: &api, ext: sports, headers: map[string]string{"x-test-token": "sports:writers"}}.build(),
			want{code: codes.OK, reason: "allowed"}},
		{"token for another domain", envoyReq{path: "/public/x", ext: sports, headers: map[string]string{"x-test-token": "media:viewers"}}.build(),
			want{code: codes.PermissionDenied, status: 403, reason: "domain_mismatch"}},
		{"invalid token", envoyReq{path: "/public/x", ext: sports, headers: map[string]string{"x-test-token": "bad:"}}.build(),
			want{code: codes.Unauthenticated, status: 401, reason: "token_expired", headers: map[string]string{"www-authenticate": `Bearer realm="athenz", error="invalid_token", error_description="token_expired"`}}},
	}
	for _, transport := range []struct {
		name   string
		client authv3.AuthorizationClient
	}{{"tcp", ts.tcp}, {"unix", ts.unix}} {
		for _, tc := range cases {
			t.Run(transport.name+"/"+tc.name, func(t *testing.T) {
				resp, err := transport.client.Check(context.Background(), tc.req)
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				a := flatten(t, resp)
				if a.code != tc.want.code {
					t.Errorf("code = %v, want %v (body %s)", a.code, tc.want.code, a.body)
				}
				if !a.allowed && a.status != tc.want.status {
					t.Errorf("http status = %d, want %d", a.status, tc.want.status)
				}
				if tc.want.reason != "" && a.meta["reason"] != tc.want.reason {
					t.Errorf("reason = %v, want %s", a.meta["reason"], tc.want.reason)
				}
				for k, v := range tc.want.headers {
					if a.headers[k] != v {
						t.Errorf("header %s = %q, want %q (all: %v)", k, a.headers[k], v, a.headers)
					}
				}
				for _, h := range tc.want.remove {
					if !contains(a.remove, h) {
						t.Errorf("headers_to_remove %v lacks %s", a.remove, h)
					}
				}
				if id, _ := a.meta["decision_id"].(string); id == "" {
					t.Errorf("no decision_id in dynamic metadata %v", a.meta)
				}
				if !a.allowed {
					checkDenialBody(t, a)
				}
				if tc.want.code == codes.Unauthenticated && !strings.HasPrefix(a.headers["www-authenticate"], `Bearer realm="athenz"`) {
					t.Errorf("www-authenticate = %q", a.headers["www-authenticate"])
				}
			})
		}
	}
}

// checkDenialBody checks the short JSON body of a denial against its metadata.
func checkDenialBody(t *testing.T, a answer) {
	t.Helper()
	var body struct {
		Allowed    *bool  `json:"allowed"`
		Reason     string `json:"reason"`
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	if body.Allowed == nil || *body.Allowed || body.Reason != a.meta["reason"] || body.DecisionID != a.meta["decision_id"] {
		t.Errorf("body %s does not match metadata %v", a.body, a.meta)
	}
	if a.headers["x-athenz-decision-id"] != body.DecisionID {
		t.Errorf("x-athenz-decision-id = %q, want %q", a.headers["x-athenz-decision-id"], body.DecisionID)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDynamicMetadataNamesTheAssertion(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	a := flatten(t, ts.check(t, envoyReq{path: "/public/secret", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()))
	if a.meta["policy"] != "read" || a.meta["principal"] != "sports.api" || a.meta["credential"] != "mtls" || a.meta["domain"] != "sports" {
		t.Errorf("metadata %v, want the read policy's DENY assertion", a.meta)
	}
	if _, ok := a.meta["assertion_id"].(float64); !ok {
		t.Errorf("assertion_id %v is not a number", a.meta["assertion_id"])
	}
}

func TestGRPCHealth(t *testing.T) {
	cfg, _, path := fileServerConfig(t)
	// Start with a missing bundle file: not serving until it appears.
	good := readFile(t, path)
	removeFile(t, path)
	cfg.Bundle.PollInterval = 5e6
	ts := startServer(t, cfg, Deps{})
	hc := healthpb.NewHealthClient(ts.conns[0])
	for _, svc := range []string{"", AuthorizationService} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health(%q) before a bundle = %v, want NOT_SERVING", svc, resp.GetStatus())
		}
	}
	watch, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: AuthorizationService})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first watch status %v, %v", first.GetStatus(), err)
	}
	writeFileAtomic(t, path, good)
	next, err := watch.Recv()
	if err != nil || next.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after the bundle: %v, %v; want SERVING", next.GetStatus(), err)
	}
}
