package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// limitsEnv is a test issuer that also loads domain "limits", which sets Athenz's expiry
// limits: serviceCertExpiryMins 120, roleCertExpiryMins 90, tokenExpiryMins 45; role
// "plain" sets none, "short" certExpiryMins 30 and tokenExpiryMins 20, "long"
// certExpiryMins 600 and tokenExpiryMins 300. limits.api is a member of all three.
// The clock is fixed at the returned time.
func limitsEnv(t *testing.T) (*env, time.Time) {
	t.Helper()
	r := func(name string, extra map[string]any) map[string]any {
		m := map[string]any{"name": "limits:role." + name, "roleMembers": []member{{"limits.api"}}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	doc := map[string]any{
		"name": "limits", "serviceCertExpiryMins": 120, "roleCertExpiryMins": 90, "tokenExpiryMins": 45,
		"roles": []any{
			r("providers", map[string]any{"roleMembers": []member{{"sys.auth.zts"}}}),
			r("plain", nil),
			r("short", map[string]any{"certExpiryMins": 30, "tokenExpiryMins": 20}),
			r("long", map[string]any{"certExpiryMins": 600, "tokenExpiryMins": 300}),
		},
		"policies": policiesOf("limits", pol{Name: "limits:policy.launch", Assertions: []assertion{
			{Role: "limits:role.providers", Action: "launch", Resource: "limits:service.*"},
		}}),
		"services": []service{svc(t, "limits.api")},
	}
	e := newEnv(t, func(c *issuer.Config) {
		data, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Domains.Dir, "limits.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	now := time.Now().Truncate(time.Second)
	e.setNow(now)
	return e, now
}

// TestServiceCertExpiryLimit caps service certificates by the domain's
// serviceCertExpiryMins, on the n-token refresh path and on register; other domains keep
// the default.
func TestServiceCertExpiryLimit(t *testing.T) {
	e, now := limitsEnv(t)
	key := serviceKey("limits.api")
	refresh := func(expiry int32) *issuer.InstanceRefreshRequest {
		return &issuer.InstanceRefreshRequest{CSR: serviceCSR(t, key, "limits", "api", "", ""), ExpiryTime: &expiry}
	}
	cases := []struct {
		name string
		get  func() time.Time // the certificate's NotAfter
		want time.Duration
	}{
		{"refresh, default capped", func() time.Time { return e.serviceCert(t, "limits.api").Leaf.NotAfter }, 2 * time.Hour},
		{"refresh, longer request capped", func() time.Time { return e.svcRefresh(t, "limits.api", refresh(600)) }, 2 * time.Hour},
		{"refresh, shorter request kept", func() time.Time { return e.svcRefresh(t, "limits.api", refresh(60)) }, time.Hour},
		{"register, default capped", func() time.Time {
			id, r := e.registerNToken(t, "limits.api", "i-1")
			if r.status != 201 {
				t.Fatalf("register: %d %s", r.status, r.body)
			}
			return parseCert(t, id.X509Certificate).NotAfter
		}, 2 * time.Hour},
		{"domain without a limit", func() time.Time { return e.serviceCert(t, "sports.api").Leaf.NotAfter }, 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.get(); !got.Equal(now.Add(tc.want)) {
				t.Errorf("notAfter %s after now, want %s", got.Sub(now), tc.want)
			}
		})
	}
}

// svcRefresh posts an n-token service refresh and returns the certificate's NotAfter.
func (e *env) svcRefresh(t testing.TB, principal string, req *issuer.InstanceRefreshRequest) time.Time {
	t.Helper()
	d, s, _ := athenz.SplitPrincipal(principal)
	key := serviceKey(principal)
	r := e.call(t, e.client(nil), "POST", "/instance/"+d+"/"+s+"/refresh", req,
		issuer.DefaultNTokenHeader, ntoken(t, principal, key, "0", time.Now(), 10*time.Minute))
	if r.status != 200 {
		t.Fatalf("refresh %s: %d %s", principal, r.status, r.body)
	}
	var id issuer.Identity
	r.decode(t, &id)
	return parseCert(t, id.Certificate).NotAfter
}

// TestRoleCertExpiryLimit caps role certificates by the role's certExpiryMins, else the
// domain's roleCertExpiryMins; a limit never lengthens a certificate.
func TestRoleCertExpiryLimit(t *testing.T) {
	e, now := limitsEnv(t)
	api := e.client(e.serviceCert(t, "limits.api"))
	key := newP256(t)
	cases := []struct {
		role   string
		expiry int64 // minutes, 0: default (24h)
		want   time.Duration
	}{
		{"plain", 0, 90 * time.Minute},        // the domain's limit
		{"plain", 60, time.Hour},              // a shorter request is kept
		{"short", 0, 30 * time.Minute},        // the role's limit
		{"short", 600, 30 * time.Minute},      // a longer request is capped
		{"long", 0, 10 * time.Hour},           // the role's limit replaces the domain's
		{"long", 24 * 60 * 2, 10 * time.Hour}, // ...and caps
		{"long", 120, 2 * time.Hour},          // ...and never lengthens
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.role, tc.expiry), func(t *testing.T) {
			csr := makeCSR(t, csrSpec{key: key, cn: "limits:role." + tc.role,
				uris:   []string{athenz.RoleSpiffeID("", "limits", tc.role), "athenz://principal/limits.api"},
				emails: []string{"limits.api@athenz.cloud"}})
			r := e.call(t, api, "POST", "/rolecert", issuer.RoleCertificateRequest{CSR: csr, ExpiryTime: tc.expiry})
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var rc issuer.RoleCertificate
			r.decode(t, &rc)
			if got := parseCert(t, rc.X509Certificate).NotAfter; !got.Equal(now.Add(tc.want)) {
				t.Errorf("expiryTime %d: notAfter %s after now, want %s", tc.expiry, got.Sub(now), tc.want)
			}
		})
	}
}

// TestTokenExpiryLimit caps access tokens and role tokens by the smallest
// tokenExpiryMins of the granted roles, else the domain's.
func TestTokenExpiryLimit(t *testing.T) {
	e, now := limitsEnv(t)
	api := e.client(e.serviceCert(t, "limits.api"))
	cases := []struct {
		name      string
		scope     string // access token scope
		roles     string // role token role list ("": all)
		expiresIn string // access token expires_in and role token maxExpiryTime, seconds
		want      time.Duration
	}{
		{"all roles: smallest role limit", "limits:domain", "", "", 20 * time.Minute},
		{"role without a limit: domain's", "limits:role.plain", "plain", "", 45 * time.Minute},
		{"shorter request kept", "limits:role.plain", "plain", "600", 10 * time.Minute},
		{"role limit above the default", "limits:role.long", "long", "", 0}, // 0: the route's default
		{"role limit caps a long request", "limits:role.long", "long", "36000", 5 * time.Hour},
		{"role limit wins over the domain's", "limits:role.plain limits:role.long", "plain,long", "36000", 5 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {tc.scope}}
			q := url.Values{}
			if tc.roles != "" {
				q.Set("role", tc.roles)
			}
			if tc.expiresIn != "" {
				form.Set("expires_in", tc.expiresIn)
				q.Set("maxExpiryTime", tc.expiresIn)
			}
			wantAccess, wantRole := tc.want, tc.want
			if tc.want == 0 {
				wantAccess, wantRole = time.Hour, 2*time.Hour
			}
			r := e.call(t, api, "POST", "/oauth2/token", form)
			if r.status != 200 {
				t.Fatalf("access token: %d %s", r.status, r.body)
			}
			var at issuer.AccessTokenResponse
			r.decode(t, &at)
			claims, err := athenz.VerifyAccessToken(at.AccessToken, e.jwks(t), athenz.AccessTokenOptions{Audiences: []string{"limits"}})
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(at.ExpiresIn)*time.Second != wantAccess || claims.ExpiresAt != now.Add(wantAccess).Unix() {
				t.Errorf("access token expires_in %d, exp %d after now, want %s", at.ExpiresIn, claims.ExpiresAt-now.Unix(), wantAccess)
			}
			r = e.call(t, api, "GET", "/domain/limits/token?"+q.Encode(), nil)
			if r.status != 200 {
				t.Fatalf("role token: %d %s", r.status, r.body)
			}
			var rt issuer.RoleToken
			r.decode(t, &rt)
			if rt.ExpiryTime != now.Add(wantRole).Unix() {
				t.Errorf("role token expiryTime %d after now, want %s", rt.ExpiryTime-now.Unix(), wantRole)
			}
		})
	}
}
