package athenz_test

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// testRoleToken returns a fully populated role token issued at testNow.
func testRoleToken() *athenz.RoleToken {
	return &athenz.RoleToken{
		Domain: "sports", Roles: []string{"readers", "writers.eu"}, CompleteRoleSet: true,
		Principal: "media.api", Host: "zts.example.com", ProxyUser: "proxy.svc", Salt: "f10bc905071a72d1",
		IssueTime: testNow, ExpiryTime: testNow.Add(2 * time.Hour), KeyID: "zts.0", IP: "10.11.12.13",
	}
}

// ztsKeys is a role-token key lookup with one ZTS key, "zts.0".
func ztsKeys(pub crypto.PublicKey) func(string) (crypto.PublicKey, bool) {
	return athenz.StaticKeySet{"zts.0": pub}.Key
}

func TestRoleTokenSignUsesJavaOrder(t *testing.T) {
	s, err := testRoleToken().Sign(testP256())
	if err != nil {
		t.Fatal(err)
	}
	want := "v=Z1;d=sports;r=readers,writers.eu;c=1;p=media.api;h=zts.example.com;proxy=proxy.svc;a=f10bc905071a72d1;t=1700000000;e=1700007200;k=zts.0;i=10.11.12.13;s="
	if !strings.HasPrefix(s, want) {
		t.Fatalf("got  %s\nwant %s...", s, want)
	}
	minimal := &athenz.RoleToken{Domain: "d", Roles: []string{"r"}, IssueTime: testNow, ExpiryTime: testNow.Add(time.Hour), KeyID: "0", Salt: "aa"}
	s, err = minimal.Sign(testP256())
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=Z1;d=d;r=r;a=aa;t=1700000000;e=1700003600;k=0;s="; !strings.HasPrefix(s, want) {
		t.Errorf("got  %s\nwant %s...", s, want)
	}
}

func TestParseRoleToken(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		check   func(*athenz.RoleToken) bool
		wantErr string
	}{
		{"java order", "v=Z1;d=sports;r=readers,writers;c=1;p=user_domain.user;h=localhost;a=f10bc905071a72d1;t=1448045776;e=1448049376;k=0;i=10.11.12.13;s=pujvQuvaLa2jgE3k24bCw5Hm7AP9dUQkmkwNfX2bPhVXyhdRkOlbttF4exJm9V571sJXid6vsihgopCdxqW_qA--",
			func(r *athenz.RoleToken) bool {
				return r.Domain == "sports" && len(r.Roles) == 2 && r.Roles[1] == "writers" && r.CompleteRoleSet &&
					r.Principal == "user_domain.user" && r.KeyID == "0" && r.IP == "10.11.12.13" && r.ExpiryTime.Unix() == 1448049376
			}, ""},
		{"any order, no k", "r=readers;t=1;e=2;d=sports;v=Z1;s=abc",
			func(r *athenz.RoleToken) bool { return r.KeyID == "0" && r.Principal == "" && !r.CompleteRoleSet }, ""},
		{"proxy", "v=Z1;d=d;r=r;p=a.b;proxy=c.d;t=1;e=2;k=1;s=abc",
			func(r *athenz.RoleToken) bool { return r.ProxyUser == "c.d" }, ""},
		{"wrong version", "v=S1;d=d;r=r;t=1;e=2;s=abc", nil, `version "S1"`},
		{"no roles", "v=Z1;d=d;t=1;e=2;s=abc", nil, "no roles"},
		{"empty role entry", "v=Z1;d=d;r=a,,b;t=1;e=2;s=abc", nil, "entity name"},
		{"role with colon", "v=Z1;d=d;r=d:role.a;t=1;e=2;s=abc", nil, "entity name"},
		{"c=0", "v=Z1;d=d;r=r;c=0;t=1;e=2;s=abc", nil, "want c=1"},
		{"duplicate roles field", "v=Z1;d=d;r=r;r=admin;t=1;e=2;s=abc", nil, `field "r" appears twice`},
		{"java test trick", "v=Z1;d=coretech;r=role1,role2;s=signature;d=sports;r=api", nil, "authorized-service tokens are not supported"},
		{"unsigned", "v=Z1;d=angler;r=admin;a=aAkjbbDMhnLX;t=1431974053;e=1431974153;k=0", nil, "no signature"},
		{"bad principal", "v=Z1;d=d;r=r;p=a..b;t=1;e=2;s=abc", nil, "service name"},
		{"unknown field", "v=Z1;d=d;r=r;n=x;t=1;e=2;s=abc", nil, `unknown field "n"`},
		{"too many roles", "v=Z1;d=d;r=" + strings.Repeat("a,", 5000) + "a;t=1;e=2;s=abc", nil, "roles, limit"},
		{"too long", "v=Z1;d=d;r=" + strings.Repeat("a", athenz.MaxRoleTokenLength) + ";t=1;e=2;s=abc", nil, "limit 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := athenz.ParseRoleToken(tc.token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, athenz.ErrTokenMalformed) {
					t.Errorf("error %v does not wrap ErrTokenMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(r) {
				t.Errorf("unexpected fields: %+v", r)
			}
		})
	}
}

func TestRoleTokenVerify(t *testing.T) {
	key := testP256()
	good, err := testRoleToken().Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	rsaToken, err := testRoleToken().Sign(testRSA2048())
	if err != nil {
		t.Fatal(err)
	}
	noKeys := func(string) (crypto.PublicKey, bool) { return nil, false }
	tests := []struct {
		name    string
		token   string
		keys    func(string) (crypto.PublicKey, bool)
		now     time.Time
		wantErr error
	}{
		{"valid", good, ztsKeys(key.Public()), testNow.Add(time.Hour), nil},
		{"valid rsa", rsaToken, ztsKeys(testRSA2048().Public()), testNow, nil},
		{"unknown key id", good, noKeys, testNow, athenz.ErrUnknownKey},
		{"nil key", good, func(string) (crypto.PublicKey, bool) { return nil, true }, testNow, athenz.ErrUnknownKey},
		{"wrong key", good, ztsKeys(testP256b().Public()), testNow, athenz.ErrBadSignature},
		{"expired", good, ztsKeys(key.Public()), testNow.Add(2*time.Hour + time.Second), athenz.ErrTokenExpired},
		{"from the future", good, ztsKeys(key.Public()), testNow.Add(-10 * time.Minute), athenz.ErrTokenNotYetValid},
		{"role added", strings.Replace(good, "r=readers", "r=admin,readers", 1), ztsKeys(key.Public()), testNow, athenz.ErrBadSignature},
		{"domain changed", strings.Replace(good, "d=sports", "d=sport", 1), ztsKeys(key.Public()), testNow, athenz.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := athenz.VerifyRoleToken(tc.token, tc.keys, tc.now)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if r.Domain != "sports" || len(r.Roles) != 2 || r.Principal != "media.api" || r.KeyID != "zts.0" ||
					!r.ExpiryTime.Equal(testNow.Add(2*time.Hour)) {
					t.Errorf("verified token fields: %+v", r)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || r != nil {
				t.Fatalf("got %v, %v; want error %v", r, err, tc.wantErr)
			}
		})
	}
	if err := new(athenz.RoleToken).Verify(ztsKeys(key.Public()), testNow); err == nil {
		t.Error("Verify of a token that was never parsed succeeded")
	}
	long := testRoleToken()
	long.ExpiryTime = testNow.Add(31 * 24 * time.Hour)
	s, err := long.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := athenz.VerifyRoleToken(s, ztsKeys(key.Public()), testNow); !errors.Is(err, athenz.ErrTokenLifetime) {
		t.Errorf("31-day role token: %v, want ErrTokenLifetime", err)
	}
}

func TestRoleTokenSignRefusesBadFields(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*athenz.RoleToken)
		want   string
	}{
		{"no key id", func(r *athenz.RoleToken) { r.KeyID = "" }, "key id"},
		{"no roles", func(r *athenz.RoleToken) { r.Roles = nil }, "no roles"},
		{"comma in role", func(r *athenz.RoleToken) { r.Roles = []string{"a,b"} }, "entity name"},
		{"semicolon in principal", func(r *athenz.RoleToken) { r.Principal = "a;k=1" }, "service name"},
		{"bad ip", func(r *athenz.RoleToken) { r.IP = "localhost" }, "ip address"},
		{"version", func(r *athenz.RoleToken) { r.Version = "Z2" }, "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testRoleToken()
			tc.mutate(r)
			if _, err := r.Sign(testP256()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
