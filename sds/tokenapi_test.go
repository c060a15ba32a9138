package sds

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestTokenAPIAccessToken(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{AccessTokenLifetime: 30 * time.Minute}, nil)
	cases := []struct {
		name      string
		query     string
		wantRoles []string
		wantLife  time.Duration
		wantScope string
	}{
		{"one role", "domain=sports&role=readers", []string{"readers"}, 30 * time.Minute, "sports:role.readers"},
		{"roles repeated, unsorted, upper case", "domain=Sports&role=writers&role=READERS&role=writers", []string{"readers", "writers"}, 30 * time.Minute, "sports:role.readers sports:role.writers"},
		{"comma list", "domain=sports&role=writers,readers&expires_in=600", []string{"readers", "writers"}, 10 * time.Minute, "sports:role.readers sports:role.writers"},
		{"whole domain", "domain=weather", nil, 30 * time.Minute, "weather:role.admin weather:role.readers"},
		{"explicit identity", "domain=sports&role=readers&identity=sports.api&expires_in=60", []string{"readers"}, time.Minute, "sports:role.readers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.accessToken(tc.query)
			call := e.fetcher.lastCall()
			if call.kind != "access" || call.identity != idAPI || fmt.Sprint(call.roles) != fmt.Sprint(tc.wantRoles) || call.lifetime != tc.wantLife {
				t.Errorf("fetch = %+v, want roles %v lifetime %s for %s", call, tc.wantRoles, tc.wantLife, idAPI)
			}
			if got.TokenType != "Bearer" || got.ExpiresIn != int64(time.Hour/time.Second) || got.Scope != tc.wantScope || got.AccessToken == "" {
				t.Errorf("response = %+v, want Bearer, 3600 s, scope %q", got, tc.wantScope)
			}
		})
	}
}

func TestTokenAPIRoleToken(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	r := e.get("/v1/roletoken?domain=sports&role=readers,writers&expires_in=900")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got tapiTokenResponse
	r.decode(t, &got)
	if !strings.HasPrefix(got.Token, "v=Z1;d=sports;r=readers,writers;") || got.ExpiryTime != e.clock.Now().Add(time.Hour).Unix() {
		t.Errorf("response = %+v", got)
	}
	if c := e.fetcher.lastCall(); c.kind != "role" || c.lifetime != 15*time.Minute {
		t.Errorf("fetch = %+v, want a role token of 15 min", c)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", r.header)
	}
}

func TestTokenAPINTokenVerifies(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{NTokenKeyVersion: "v1", NTokenLifetime: 10 * time.Minute, NTokenHostname: "host1.example.com"}, nil)
	var got tapiTokenResponse
	first := e.get("/v1/ntoken")
	first.decode(t, &got)
	tok, err := athenz.ParseNToken(got.Token)
	if err != nil {
		t.Fatalf("status %d: %v", first.status, err)
	}
	if tok.Principal() != idAPI || tok.KeyID != "v1" || tok.Hostname != "host1.example.com" || got.ExpiryTime != tok.ExpiryTime.Unix() {
		t.Errorf("n-token = %+v, response %+v", tok, got)
	}
	if d, s, k := tok.KeySource(); d != "sports" || s != "api" || k != "v1" {
		t.Errorf("KeySource = %s %s %s", d, s, k)
	}
	if err := tok.Verify(e.leaf.Key.Public(), e.clock.Now(), athenz.NTokenOptions{}); err != nil {
		t.Errorf("verify with the identity's public key: %v", err)
	}
	other, _ := e.ca.Issue(idAPI, "", time.Hour)
	if err := tok.Verify(other.Key.Public(), e.clock.Now(), athenz.NTokenOptions{}); !errors.Is(err, athenz.ErrBadSignature) {
		t.Errorf("verify with another key: %v, want ErrBadSignature", err)
	}
	var again tapiTokenResponse
	e.get("/v1/ntoken?identity=sports.api").decode(t, &again)
	if again.Token != got.Token {
		t.Error("a second request signed a new n-token instead of serving the cached one")
	}
	if e.fetcher.count() != 0 {
		t.Error("n-tokens must be signed locally, not fetched")
	}
}

func TestTokenAPISvcCertHasNoKey(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	r := e.get("/v1/svccert")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "PRIVATE KEY") {
		t.Fatal("svccert answer contains a private key")
	}
	var got tapiSvcCertResponse
	r.decode(t, &got)
	blk, _ := pem.Decode([]byte(got.X509Certificate))
	ca, _ := pem.Decode([]byte(got.X509CertificateSigner))
	if blk == nil || string(blk.Bytes) != string(e.leaf.Cert.Raw) || ca == nil || string(ca.Bytes) != string(e.ca.Cert.Raw) {
		t.Errorf("chain or signer do not match the identity and the CA")
	}
	if got.Name != idAPI || got.ExpiryTime != e.leaf.Cert.NotAfter.Unix() || got.SpiffeID != spiffeOf(idAPI) {
		t.Errorf("response = %+v", got)
	}
}

func TestTokenAPIHealthz(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{DefaultIdentity: idWeb}, nil)
	if r := e.get("/healthz"); r.status != http.StatusServiceUnavailable {
		t.Errorf("before the default identity: %d %s, want 503", r.status, r.body)
	}
	e.issue(idWeb)
	if r := e.get("/healthz"); r.status != http.StatusOK {
		t.Errorf("with the default identity: %d %s, want 200", r.status, r.body)
	}
}

func TestTokenAPIBadRequests(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	cases := []struct {
		name, method, path string
		status             int
		param              string
	}{
		{"missing domain", "GET", "/v1/token?role=readers", 400, "domain"},
		{"bad domain", "GET", "/v1/token?domain=sp%20orts", 400, "domain"},
		{"dot-ended domain", "GET", "/v1/roletoken?domain=sports.", 400, "domain"},
		{"full role name", "GET", "/v1/token?domain=sports&role=sports:role.readers", 400, "role"},
		{"empty role in list", "GET", "/v1/token?domain=sports&role=readers,", 400, "role"},
		{"too many roles", "GET", "/v1/token?domain=sports&role=" + strings.Repeat("r,", 64) + "r", 400, "role"},
		{"unknown parameter", "GET", "/v1/token?domain=sports&roles=readers", 400, "roles"},
		{"repeated domain", "GET", "/v1/token?domain=sports&domain=weather", 400, "domain"},
		{"negative expires_in", "GET", "/v1/token?domain=sports&expires_in=-1", 400, "expires_in"},
		{"word expires_in", "GET", "/v1/token?domain=sports&expires_in=soon", 400, "expires_in"},
		{"expires_in over 30 days", "GET", "/v1/roletoken?domain=sports&expires_in=2592001", 400, "expires_in"},
		{"identity not a principal", "GET", "/v1/token?domain=sports&identity=sports", 400, "identity"},
		{"domain on ntoken", "GET", "/v1/ntoken?domain=sports", 400, "domain"},
		{"expires_in on svccert", "GET", "/v1/svccert?expires_in=5", 400, "expires_in"},
		{"bad escape", "GET", "/v1/token?domain=%zz", 400, ""},
		{"query too long", "GET", "/v1/token?domain=sports&x=" + strings.Repeat("a", tapiMaxQuery), 414, ""},
		{"POST", "POST", "/v1/token?domain=sports", 405, ""},
		{"HEAD", "HEAD", "/v1/ntoken", 405, ""},
		{"unknown path", "GET", "/v1/tokens", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Error("Cache-Control is not no-store")
			}
			if tc.method == "HEAD" {
				return
			}
			var er tapiErrorResponse
			r.decode(t, &er)
			if er.Code != tc.status || er.Parameter != tc.param || er.Message == "" {
				t.Errorf("error = %+v, want code %d parameter %q", er, tc.status, tc.param)
			}
			if tc.status == 405 && r.header.Get("Allow") != "GET" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
		})
	}
	if n := e.fetcher.count(); n != 0 {
		t.Errorf("%d fetches for bad requests", n)
	}
}

func TestTokenAPIHeaderTooLarge(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	req, _ := http.NewRequest(http.MethodGet, e.base+"/v1/ntoken", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*tapiMaxHeaderBytes))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

// tapiStatusErr is an IssuerStatusError that is not an *IssuerError, as a fetcher might
// define.
type tapiStatusErr struct{ code int }

func (e tapiStatusErr) Error() string     { return fmt.Sprintf("upstream said %d", e.code) }
func (e tapiStatusErr) IssuerStatus() int { return e.code }

func TestTokenAPIFetchErrors(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	cases := []struct {
		name       string
		err        error
		status     int
		retryAfter string // refusals: NegativeTTL; transient failures: the first backoff
		message    string
	}{
		{"issuer 403", &IssuerError{Status: 403, Message: "principal has no access to any role in domain sports"}, 403, "10", "no access to any role"},
		{"issuer 401 wrapped", fmt.Errorf("access token: %w", &IssuerError{Status: 401, Message: "certificate not accepted"}), 401, "10", "certificate not accepted"},
		{"issuer 404", &IssuerError{Status: 404, Message: "unknown domain"}, 404, "10", "unknown domain"},
		{"issuer 429", tapiStatusErr{429}, 429, "1", "upstream said 429"},
		{"issuer 500", &IssuerError{Status: 500, Message: "database down"}, 502, "1", "status 500"},
		{"issuer unreachable", errors.New("dial tcp 10.0.0.1:4443: connect: connection refused"), 502, "1", "could not be reached"},
		{"issuer timeout", fmt.Errorf("post: %w", context.DeadlineExceeded), 504, "1", "did not answer"},
		{"identity not ready", fmt.Errorf("no certificate: %w", ErrIdentityUnavailable), 503, "5", "retry"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.fetcher.set(func(f *tapiFetcher) { f.err = tc.err })
			// A new domain per case: failures are remembered per token.
			r := e.get(fmt.Sprintf("/v1/token?domain=d%d&role=readers", i))
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			var er tapiErrorResponse
			r.decode(t, &er)
			if er.Code != tc.status || !strings.Contains(er.Message, tc.message) || strings.Contains(er.Message, "goroutine") {
				t.Errorf("error = %+v, want a message containing %q", er, tc.message)
			}
		})
	}
}

func TestTokenAPIIdentityNotInCache(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	for _, path := range []string{"/v1/token?domain=sports&identity=sports.web", "/v1/roletoken?domain=sports&identity=sports.web", "/v1/ntoken?identity=sports.web", "/v1/svccert?identity=sports.web"} {
		r := e.get(path)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d Retry-After %q, want 503 with Retry-After", path, r.status, r.header.Get("Retry-After"))
		}
	}
	e.issue(idWeb)
	if r := e.get("/v1/token?domain=sports"); r.status != http.StatusBadRequest {
		t.Errorf("two identities and no identity parameter: %d, want 400", r.status)
	}
	if r := e.get("/v1/token?domain=sports&identity=sports.web"); r.status != http.StatusOK {
		t.Errorf("second identity: %d %s", r.status, r.body)
	}
	e.cache.RemoveIdentity(idAPI)
	e.cache.RemoveIdentity(idWeb)
	if r := e.get("/v1/token?domain=sports"); r.status != http.StatusServiceUnavailable {
		t.Errorf("no identity at all: %d, want 503", r.status)
	}
}

func TestTokenAPIAllowedIdentities(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{AllowedIdentities: []string{idWeb}}, nil)
	e.issue(idWeb)
	if r := e.get("/v1/ntoken?identity=sports.api"); r.status != http.StatusForbidden {
		t.Errorf("identity outside AllowedIdentities: %d, want 403", r.status)
	}
	var got tapiTokenResponse
	e.get("/v1/ntoken").decode(t, &got)
	if tok, err := athenz.ParseNToken(got.Token); err != nil || tok.Principal() != idWeb {
		t.Errorf("default identity: %v %v, want %s (the only allowed one)", tok, err, idWeb)
	}
}

func TestTokenAPIUnixSocketAuthorizer(t *testing.T) {
	auth := &fakeAuth{grant: Grant{Identities: []string{idWeb}}}
	path := filepath.Join(t.TempDir(), "tokens.sock")
	e := newTapiEnv(t, TokenAPIConfig{DisableTCP: true, SocketPath: path}, auth)
	e.issue(idWeb)
	if r := e.get("/v1/ntoken?identity=sports.api"); r.status != http.StatusForbidden {
		t.Errorf("identity outside the grant: %d %s, want 403", r.status, r.body)
	}
	var got tapiTokenResponse
	e.get("/v1/ntoken").decode(t, &got)
	if tok, err := athenz.ParseNToken(got.Token); err != nil || tok.Principal() != idWeb {
		t.Errorf("grant default: %v %v, want %s", tok, err, idWeb)
	}
	auth.set(Grant{Reason: "uid not allowed"})
	if r := e.get("/v1/ntoken"); r.status != http.StatusForbidden {
		t.Errorf("no grant: %d, want 403", r.status)
	}
	auth.mu.Lock()
	auth.failures = 1
	auth.mu.Unlock()
	if r := e.get("/v1/ntoken"); r.status != http.StatusServiceUnavailable {
		t.Errorf("authorizer error: %d, want 503", r.status)
	}
}

func TestTokenAPILoopbackOnly(t *testing.T) {
	deps := TokenAPIDeps{Cache: NewCache(), Fetcher: newTapiFetcher(newTapiFakeClock())}
	cases := []struct {
		name string
		cfg  TokenAPIConfig
		ok   bool
	}{
		{"default", TokenAPIConfig{}, true},
		{"localhost", TokenAPIConfig{Address: "localhost:8080"}, true},
		{"ipv6 loopback", TokenAPIConfig{Address: "[::1]:8080"}, true},
		{"all interfaces", TokenAPIConfig{Address: ":8080"}, false},
		{"public address", TokenAPIConfig{Address: "10.1.2.3:8080"}, false},
		{"public address allowed", TokenAPIConfig{Address: "10.1.2.3:8080", AllowNonLoopback: true}, true},
		{"socket only", TokenAPIConfig{DisableTCP: true, SocketPath: "/run/x.sock", Address: ":1"}, true},
		{"DisableTCP without socket", TokenAPIConfig{DisableTCP: true}, false},
		{"bad default identity", TokenAPIConfig{DefaultIdentity: "nodot"}, false},
		{"default not allowed", TokenAPIConfig{DefaultIdentity: idAPI, AllowedIdentities: []string{idWeb}}, false},
		{"negative lifetime", TokenAPIConfig{AccessTokenLifetime: -time.Second}, false},
		{"negative NegativeTTL", TokenAPIConfig{NegativeTTL: -time.Second}, false},
		{"bad n-token key version", TokenAPIConfig{NTokenKeyVersion: "a;b"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTokenAPI(tc.cfg, deps)
			if (err == nil) != tc.ok {
				t.Errorf("NewTokenAPI: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	api, err := NewTokenAPI(TokenAPIConfig{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Serve(context.Background(), lis); err == nil {
		t.Error("Serve on 0.0.0.0 succeeded without AllowNonLoopback")
	}
}

func TestTokenAPINeverLogsTokens(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	a := e.accessToken("domain=sports&role=readers")
	var rt, nt tapiTokenResponse
	e.get("/v1/roletoken?domain=sports&role=readers").decode(t, &rt)
	e.get("/v1/ntoken").decode(t, &nt)
	e.fetcher.set(func(f *tapiFetcher) { f.err = &IssuerError{Status: 403, Message: "denied"} })
	e.get("/v1/token?domain=weather")
	logs := e.logs.String()
	for _, v := range []string{a.AccessToken, rt.Token, nt.Token, strings.Split(a.AccessToken, ".")[1]} {
		if strings.Contains(logs, v) {
			t.Fatalf("the log contains a token:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "domain=sports") || !strings.Contains(logs, "identity=sports.api") {
		t.Errorf("the log lacks the request's domain and identity:\n%s", logs)
	}
}

func TestTokenAPIMetrics(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	e.accessToken("domain=sports&role=readers")
	e.accessToken("domain=sports&role=readers")
	e.get("/v1/token")
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"requests_total", map[string]string{"endpoint": tapiEPToken, "code": "200"}, 2},
		{"requests_total", map[string]string{"endpoint": tapiEPToken, "code": "400"}, 1},
		{"cache_lookups_total", map[string]string{"kind": "access_token", "result": "hit"}, 1},
		{"cache_lookups_total", map[string]string{"kind": "access_token", "result": "miss"}, 1},
		{"fetch_seconds", map[string]string{"kind": "access_token", "trigger": "request", "outcome": "ok"}, 1},
		{"cached_tokens", nil, 1},
	}
	for _, tc := range cases {
		if got := e.metric(tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestTokenAPIFetcherPanic(t *testing.T) {
	e := newTapiEnv(t, TokenAPIConfig{}, nil)
	e.fetcher.set(func(f *tapiFetcher) { f.panics = true })
	r := e.get("/v1/token?domain=sports")
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "goroutine") || strings.Contains(string(r.body), "fetcher bug") {
		t.Errorf("panicking fetcher: %d %s, want a plain 500", r.status, r.body)
	}
	e.fetcher.set(func(f *tapiFetcher) { f.panics = false })
	if r := e.get("/v1/token?domain=sports"); r.status != http.StatusOK {
		t.Errorf("after the panic: %d %s", r.status, r.body)
	}
}

func TestTokenAPIRunUnixSocket(t *testing.T) {
	checkLeaks(t)
	cache := NewCache()
	path := filepath.Join(t.TempDir(), "run", "tokens.sock")
	api, err := NewTokenAPI(TokenAPIConfig{DisableTCP: true, SocketPath: path}, TokenAPIDeps{Cache: cache, Fetcher: newTapiFetcher(newTapiFakeClock())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, "unix", path)
			if err == nil || ctx.Err() != nil {
				return c, err
			}
			runtime.Gosched() // Run has not bound the socket yet
		}
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://agent/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket: %v %v, want mode 0660", fi, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Run: %v", err)
	}
}
