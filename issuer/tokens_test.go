package issuer_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// jwks fetches the issuer's JWKS as a key set.
func (e *env) jwks(t testing.TB) athenz.StaticKeySet {
	t.Helper()
	r := e.call(t, e.client(nil), "GET", "/oauth2/keys?rfc=true", nil)
	if r.status != 200 {
		t.Fatalf("jwks: %d %s", r.status, r.body)
	}
	set, err := athenz.ParseJWKS(r.body)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestAccessToken(t *testing.T) {
	e := newEnv(t)
	opsCert := e.serviceCert(t, "sports.ops")
	ops := e.client(opsCert)
	keys := e.jwks(t)
	form := func(scope string, extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	cases := []struct {
		name      string
		form      url.Values
		roles     []string
		scope     string
		expiresIn int32
	}{
		{"all roles", form("sports:domain"), []string{"admins", "readers", "writers"}, "sports:role.admins sports:role.readers sports:role.writers", 3600},
		{"one role", form("sports:role.readers"), []string{"readers"}, "", 3600},
		{"some held", form("sports:role.readers sports:role.nosuch"), []string{"readers"}, "sports:role.readers", 3600},
		{"with openid", form("openid sports:service.ops sports:role.writers"), []string{"writers"}, "", 3600},
		{"lifetime", form("sports:role.readers", "expires_in", "600"), []string{"readers"}, "", 600},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, ops, "POST", "/oauth2/token", tc.form)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var resp issuer.AccessTokenResponse
			r.decode(t, &resp)
			if resp.TokenType != "Bearer" || resp.ExpiresIn != tc.expiresIn || resp.Scope != tc.scope {
				t.Errorf("response %+v", resp)
			}
			claims, err := athenz.VerifyAccessToken(resp.AccessToken, keys, athenz.AccessTokenOptions{
				Issuer: e.srv.Issuer(), Audiences: []string{"sports"}, CertDER: opsCert.Leaf.Raw, RequireBinding: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(claims.Scopes, tc.roles) || claims.Subject != "sports.ops" || claims.ClientID != "sports.ops" {
				t.Errorf("claims %+v", claims)
			}
		})
	}
	// An n-token caller gets an unbound token.
	ntok := ntoken(t, "sports.api", serviceKey("sports.api"), "0", time.Now(), 10*time.Minute)
	r := e.call(t, e.client(nil), "POST", "/oauth2/token", form("weather:domain"), issuer.DefaultNTokenHeader, ntok)
	if r.status != 200 {
		t.Fatalf("n-token: %d %s", r.status, r.body)
	}
	var resp issuer.AccessTokenResponse
	r.decode(t, &resp)
	claims, err := athenz.VerifyAccessToken(resp.AccessToken, keys, athenz.AccessTokenOptions{Audiences: []string{"weather"}})
	if err != nil || claims.Confirmation != nil || !slices.Equal(claims.Scopes, []string{"readers"}) {
		t.Fatalf("n-token claims %+v %v", claims, err)
	}

	refusals := []struct {
		name   string
		client string
		form   url.Values
		status int
	}{
		{"roles the caller lacks", "ops", form("sports:role.nosuch"), 403},
		{"no role in the domain", "ops", form("weather:domain"), 403},
		{"unknown domain", "ops", form("nosuch:domain"), 404},
		{"two domains", "ops", form("sports:domain weather:domain"), 400},
		{"no scope", "ops", form(""), 400},
		{"bad scope", "ops", form("sports:group.x"), 400},
		{"wrong grant", "ops", url.Values{"grant_type": {"password"}, "scope": {"sports:domain"}}, 400},
		{"proxy for principal", "ops", form("sports:domain", "proxy_for_principal", "sports.api"), 400},
		{"anonymous", "anon", form("sports:domain"), 401},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			c := ops
			if tc.client == "anon" {
				c = e.client(nil)
			}
			r := e.call(t, c, "POST", "/oauth2/token", tc.form)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			r.errorBody(t)
		})
	}
	r = e.call(t, e.client(nil), "POST", "/oauth2/token", form("sports:domain"), issuer.DefaultNTokenHeader,
		ntoken(t, "sports.api", serviceKey("other.key"), "0", time.Now(), time.Minute))
	if r.status != 401 {
		t.Fatalf("forged n-token: %d %s", r.status, r.body)
	}
}

func TestRoleToken(t *testing.T) {
	e := newEnv(t)
	ops := e.client(e.serviceCert(t, "sports.ops"))
	keys := e.jwks(t)
	cases := []struct {
		query    string
		roles    []string
		complete bool
		life     time.Duration
	}{
		{"", []string{"admins", "readers", "writers"}, true, 2 * time.Hour},
		{"?role=readers,nosuch", []string{"readers"}, false, 2 * time.Hour},
		{"?role=writers&minExpiryTime=900&maxExpiryTime=900", []string{"writers"}, false, 15 * time.Minute},
		{"?role=writers&minExpiryTime=36000", []string{"writers"}, false, 10 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := e.call(t, ops, "GET", "/domain/sports/token"+tc.query, nil)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var rt issuer.RoleToken
			r.decode(t, &rt)
			tok, err := athenz.VerifyRoleToken(rt.Token, keys.Key, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tok.Domain != "sports" || !slices.Equal(tok.Roles, tc.roles) || tok.CompleteRoleSet != tc.complete ||
				tok.Principal != "sports.ops" || tok.KeyID != "0" || tok.ExpiryTime.Unix() != rt.ExpiryTime ||
				tok.ExpiryTime.Sub(tok.IssueTime) != tc.life {
				t.Errorf("token %+v, expiryTime %d", tok, rt.ExpiryTime)
			}
		})
	}
	for path, want := range map[string]int{
		"/domain/sports/token?role=nosuch":         403,
		"/domain/nosuch/token":                     404,
		"/domain/sports/token?maxExpiryTime=x":     400,
		"/domain/sports/token?proxyForPrincipal=a": 403,
	} {
		if r := e.call(t, ops, "GET", path, nil); r.status != want {
			t.Errorf("%s: %d %s, want %d", path, r.status, r.body, want)
		}
	}
	if r := e.call(t, e.client(nil), "GET", "/domain/sports/token", nil); r.status != 401 {
		t.Errorf("anonymous: %d", r.status)
	}
}

func TestRoleCertificate(t *testing.T) {
	e := newEnv(t)
	opsCert := e.serviceCert(t, "sports.ops")
	ops := e.client(opsCert)
	key := newP256(t)
	roleCSR := func(domain, role string, extra ...string) string {
		return makeCSR(t, csrSpec{key: key, cn: domain + ":role." + role,
			uris:   append([]string{athenz.RoleSpiffeID("", domain, role), "athenz://principal/sports.ops"}, extra...),
			emails: []string{"sports.ops@athenz.cloud"}})
	}
	r := e.call(t, ops, "POST", "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "writers"), ExpiryTime: 60})
	if r.status != 200 {
		t.Fatalf("rolecert: %d %s", r.status, r.body)
	}
	var rc issuer.RoleCertificate
	r.decode(t, &rc)
	cert := parseCert(t, rc.X509Certificate)
	id, err := athenz.PrincipalFromCertificate(cert)
	if err != nil || id.Principal != "sports.ops" || id.Roles[0] != (athenz.RoleRef{Domain: "sports", Role: "writers"}) {
		t.Fatalf("role certificate identity %+v %v", id, err)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d > 66*time.Minute {
		t.Errorf("validity %s, want about 1h", d)
	}
	// The deprecated form answers a RoleToken holding the certificate.
	r = e.call(t, ops, "POST", "/domain/sports/role/readers/token", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers")})
	if r.status != 200 {
		t.Fatalf("role token cert: %d %s", r.status, r.body)
	}
	var rt issuer.RoleToken
	r.decode(t, &rt)
	if c := parseCert(t, rt.Token); c.Subject.CommonName != "sports:role.readers" || c.NotAfter.Unix() != rt.ExpiryTime {
		t.Errorf("role token certificate %q %d", c.Subject.CommonName, rt.ExpiryTime)
	}
	before := e.store.puts.Load()
	for name, tc := range map[string]struct {
		client *tlsCertificate
		path   string
		body   issuer.RoleCertificateRequest
		status int
	}{
		"not a member":            {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("weather", "readers")}, 403},
		"unknown domain":          {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("nosuch", "readers")}, 404},
		"principal of another":    {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: makeCSR(t, csrSpec{key: key, cn: "sports:role.readers", uris: []string{"athenz://principal/sports.api"}})}, 400},
		"CN is not a role":        {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: serviceCSR(t, key, "sports", "ops", "", "")}, 400},
		"path and CN differ":      {opsCert, "/domain/sports/role/writers/token", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers")}, 400},
		"no client certificate":   {nil, "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers")}, 401},
		"instance id not in cert": {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers", "athenz://instanceid/sys.auth.zts/x")}, 400},
		"proxy request":           {opsCert, "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers"), ProxyForPrincipal: "sports.api"}, 403},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.call(t, e.client(tc.client), "POST", tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			r.errorBody(t)
		})
	}
	if e.store.puts.Load() != before {
		t.Fatal("a refused request recorded a certificate")
	}
	// A role certificate is not a credential for another role certificate.
	rcCert := tlsCert(t, rc.X509Certificate, key)
	if r := e.call(t, e.client(rcCert), "POST", "/rolecert", issuer.RoleCertificateRequest{CSR: roleCSR("sports", "readers")}); r.status != 403 {
		t.Fatalf("role cert as credential: %d %s", r.status, r.body)
	}
	_ = strings.Contains
}

// TestNTokenKeyRemoved checks that a verified n-token stops working once its key is
// removed from the domain data, although verified n-tokens are cached.
func TestNTokenKeyRemoved(t *testing.T) {
	e := newEnv(t)
	tok := ntoken(t, "sports.api", serviceKey("sports.api"), "0", time.Now(), 10*time.Minute)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"sports:role.readers"}}
	for range 2 {
		if r := e.call(t, e.client(nil), "POST", "/oauth2/token", form, issuer.DefaultNTokenHeader, tok); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	cl, err := issuer.NewClient(issuer.ClientConfig{BaseURL: e.base, HTTPClient: e.client(nil)})
	if err != nil {
		t.Fatal(err)
	}
	_, etag, err := cl.FetchBundle(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	doms := testDomains(t)
	doms[1].Services = doms[1].Services[1:] // sports.api and its key are gone
	doms[1].Roles = append(doms[1].Roles, roleOf("sports", "marker", "sports.web"))
	writeDomain(t, e.domainsDir, doms[1])
	if _, _, err := cl.FetchBundle(t.Context(), etag, 8*time.Second); err != nil { // returns at the reload
		t.Fatal(err)
	}
	if r := e.call(t, e.client(nil), "POST", "/oauth2/token", form, issuer.DefaultNTokenHeader, tok); r.status != 401 {
		t.Fatalf("n-token of a removed key: %d %s", r.status, r.body)
	}
}
