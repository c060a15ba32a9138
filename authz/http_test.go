package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// httpCheck sends a request as Envoy's http_service sends it: the original method, the
// path prefix plus the original path, the original host and the allowed headers.
func httpCheck(t *testing.T, ts *testServer, method, path, host string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+ts.HTTPAddr().String()+path, strings.NewReader("request body Envoy may forward"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// xfccFor is the XFCC header an Envoy with forward_client_cert_details SANITIZE_SET and
// set_current_client_cert_details {uri, cert} writes for p.
func xfccFor(p peer) string {
	return `By=spiffe://sports/sa/gateway;Hash=abc123;Cert="` + p.certURL + `";Subject="CN=x";URI=` + p.principal
}

func TestHTTPMode(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Listen.HTTP = "127.0.0.1:0"
	cfg.HTTP = HTTPModeConfig{PathPrefix: "/authz", TrustXFCC: true}
	cfg.Decision.StripToken = true
	// The config's mapping wins over the bundle's host table.
	cfg.Decision.Mapping = &MappingConfig{DefaultDomain: "sports"}
	ts := startServer(t, cfg, Deps{NewCallers: newTokenCallers})
	ts.waitReady(t)
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	stranger := newPeer(t, "sports.stranger", "spiffe://sports/sa/stranger")

	cases := []struct {
		name, method, path, host string
		headers                  map[string]string
		status                   int
		reason                   string
		want                     map[string]string // response headers
	}{
		{"allowed through XFCC", "GET", "/authz/public/x", "media.example.com", map[string]string{"x-forwarded-client-cert": xfccFor(api)}, 200, "",
			map[string]string{"x-athenz-principal": "sports.api", "x-athenz-domain": "sports", "x-athenz-roles": "readers"}},
		{"query string kept out of the resource", "GET", "/authz/public/x?a=/secret", "", map[string]string{"x-forwarded-client-cert": xfccFor(api)}, 200, "", nil},
		{"XFCC appended by two proxies: the last element is the peer", "GET", "/authz/public/x", "", map[string]string{"x-forwarded-client-cert": xfccFor(stranger) + "," + xfccFor(api)}, 200, "", nil},
		{"denied by assertion", "GET", "/authz/public/secret", "", map[string]string{"x-forwarded-client-cert": xfccFor(api)}, 403, "denied",
			map[string]string{"x-athenz-decision": "deny", "content-type": "application/json"}},
		{"not a member", "GET", "/authz/public/x", "", map[string]string{"x-forwarded-client-cert": xfccFor(stranger)}, 403, "not_member", nil},
		{"no credential", "GET", "/authz/public/x", "", nil, 401, "",
			map[string]string{"www-authenticate": `Bearer realm="athenz"`}},
		{"malformed XFCC", "GET", "/authz/public/x", "", map[string]string{"x-forwarded-client-cert": `URI="unterminated`}, 401, "", nil},
		{"path outside the prefix", "GET", "/public/x", "", map[string]string{"x-forwarded-client-cert": xfccFor(api)}, 403, "invalid_request", nil},
		{"prefix is a whole segment", "GET", "/authzpublic/x", "", map[string]string{"x-forwarded-client-cert": xfccFor(api)}, 403, "invalid_request", nil},
		{"token with strip_token", "POST", "/authz/admin/x", "", map[string]string{"x-test-token": "sports:writers", "authorization": "Bearer t"}, 200, "",
			map[string]string{"x-envoy-auth-headers-to-remove": "x-athenz-principal,authorization", "x-athenz-roles": "writers"}},
		{"oversized headers", "GET", "/authz/public/x", "", map[string]string{"x-forwarded-client-cert": xfccFor(api), "x-big": strings.Repeat("b", 65<<10)}, 431, "headers_too_large", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "sports.example.com"
			}
			resp, body := httpCheck(t, ts, tc.method, tc.path, host, tc.headers)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			for k, v := range tc.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.status == 200 {
				if body != "" {
					t.Errorf("allow with a body %q", body)
				}
				return
			}
			var b struct {
				Allowed    bool   `json:"allowed"`
				Reason     string `json:"reason"`
				DecisionID string `json:"decision_id"`
			}
			if err := json.Unmarshal([]byte(body), &b); err != nil || b.Allowed || b.DecisionID == "" || (tc.reason != "" && b.Reason != tc.reason) {
				t.Errorf("body %s (%v), want reason %s", body, err, tc.reason)
			}
		})
	}
	if v := metricValue(t, ts.reg, "athenz_mesh_authz_decision_duration_seconds", map[string]string{"transport": "http"}); v != float64(len(cases)) {
		t.Errorf("http latency samples %v, want %d", v, len(cases))
	}
}

func TestHTTPModeIgnoresUntrustedXFCC(t *testing.T) {
	cfg, _, _ := fileServerConfig(t)
	cfg.Listen.HTTP = "127.0.0.1:0"
	cfg.Decision.Mapping = &MappingConfig{DefaultDomain: "sports"}
	ts := startServer(t, cfg, Deps{})
	ts.waitReady(t)
	api := newPeer(t, "sports.api", "spiffe://sports/sa/api")
	resp, body := httpCheck(t, ts, "GET", "/public/x", "sports.example.com", map[string]string{"x-forwarded-client-cert": xfccFor(api)})
	if resp.StatusCode != 401 {
		t.Errorf("untrusted XFCC: status %d, want 401; body %s", resp.StatusCode, body)
	}
}
