package athenz_test

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// testNow is the fixed clock of every token test.
var testNow = time.Unix(1_700_000_000, 0).UTC()

// signNToken signs a service token issued at testNow with the given lifetime.
func signNToken(t testing.TB, key crypto.Signer, mutate func(*athenz.NToken)) string {
	t.Helper()
	n := &athenz.NToken{
		Domain: "sports", Name: "api", KeyID: "v1", Hostname: "host1.example.com", IP: "10.0.0.1",
		Salt: "6ddc9124f255b2af", IssueTime: testNow, ExpiryTime: testNow.Add(time.Hour),
	}
	if mutate != nil {
		mutate(n)
	}
	s, err := n.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNTokenSignUsesGoBuilderOrder(t *testing.T) {
	s := signNToken(t, testP256(), func(n *athenz.NToken) { n.KeyService = "zts" })
	want := "v=S1;d=sports;n=api;k=v1;z=zts;h=host1.example.com;i=10.0.0.1;a=6ddc9124f255b2af;t=1700000000;e=1700003600;s="
	if !strings.HasPrefix(s, want) {
		t.Fatalf("got  %s\nwant %s...", s, want)
	}
	minimal := signNToken(t, testP256(), func(n *athenz.NToken) { n.Hostname, n.IP, n.Salt = "", "", "" })
	unsigned, _, _ := strings.Cut(minimal, ";s=")
	fields := strings.Split(unsigned, ";")
	if len(fields) != 7 || !strings.HasPrefix(fields[4], "a=") || len(fields[4]) != 2+16 {
		t.Errorf("minimal token %q: want v,d,n,k,a,t,e... with a 16-character generated salt", unsigned)
	}
}

func TestParseNToken(t *testing.T) {
	sig := strings.SplitN(signNToken(t, testP256(), nil), ";s=", 2)[1]
	tests := []struct {
		name    string
		token   string
		want    athenz.NToken // compared field by field when wantErr is ""
		wantErr string
	}{
		{
			name:  "go order",
			token: "v=S1;d=sports;n=api;k=v1;h=host1.example.com;i=10.0.0.1;a=6ddc9124f255b2af;t=1700000000;e=1700003600;s=" + sig,
			want:  athenz.NToken{Version: "S1", Domain: "sports", Name: "api", KeyID: "v1", Hostname: "host1.example.com", IP: "10.0.0.1", Salt: "6ddc9124f255b2af"},
		},
		{
			name:  "java order with key service",
			token: "v=S1;d=sports.prod;n=api;h=h;a=saltvalue;t=1700000000;e=1700003600;k=0;z=zts;i=::1;s=" + sig,
			want:  athenz.NToken{Version: "S1", Domain: "sports.prod", Name: "api", KeyID: "0", Hostname: "h", IP: "::1", Salt: "saltvalue", KeyService: "zts"},
		},
		{
			name:  "no key id means 0",
			token: "v=U1;d=user;n=joe;a=1;t=1700000000;e=1700003600;s=" + sig,
			want:  athenz.NToken{Version: "U1", Domain: "user", Name: "joe", KeyID: "0", Salt: "1"},
		},
		{"unsigned", "v=S1;d=sports;n=api;k=0;t=1;e=2", athenz.NToken{}, "no signature"},
		{"empty signature", "v=S1;d=sports;n=api;k=0;t=1;e=2;s=", athenz.NToken{}, "empty signature"},
		{"authorized service tail", "v=S1;d=sports;n=api;b=x;t=1;e=2;s=abc;bk=0;bs=def", athenz.NToken{}, "authorized-service tokens are not supported"},
		{"authorized service field", "v=S1;d=sports;n=api;b=x;t=1;e=2;s=abc", athenz.NToken{}, `unknown field "b"`},
		{"original requestor", "v=S1;d=sports;n=api;o=x.y;t=1;e=2;s=abc", athenz.NToken{}, `unknown field "o"`},
		{"bad signature character", "v=S1;d=sports;n=api;t=1;e=2;s=ab+c", athenz.NToken{}, "invalid character '+' in the signature"},
		{"duplicate domain", "v=S1;d=sports;d=admin;n=api;t=1;e=2;s=abc", athenz.NToken{}, `field "d" appears twice`},
		{"unknown field", "v=S1;d=sports;n=api;x=1;t=1;e=2;s=abc", athenz.NToken{}, `unknown field "x"`},
		{"empty value", "v=S1;d=sports;n=api;h=;t=1;e=2;s=abc", athenz.NToken{}, `field "h" has an empty value`},
		{"equals in value", "v=S1;d=sports;n=api=x;t=1;e=2;s=abc", athenz.NToken{}, `value of field "n" contains '='`},
		{"empty field", "v=S1;;d=sports;n=api;t=1;e=2;s=abc", athenz.NToken{}, "is not key=value"},
		{"signature field first", "s=abc;v=S1;d=sports;n=api;t=1;e=2;s=abc", athenz.NToken{}, `unknown field "s"`},
		{"missing name", "v=S1;d=sports;t=1;e=2;s=abc", athenz.NToken{}, "simple name"},
		{"missing times", "v=S1;d=sports;n=api;s=abc", athenz.NToken{}, "issue time (t) and expiry time (e) are required"},
		{"negative time", "v=S1;d=sports;n=api;t=-1;e=2;s=abc", athenz.NToken{}, "not a unix time"},
		{"huge time", "v=S1;d=sports;n=api;t=1;e=9999999999999999999;s=abc", athenz.NToken{}, "not a unix time"},
		{"bad version", "v=Z1;d=sports;n=api;t=1;e=2;s=abc", athenz.NToken{}, "version"},
		{"domain with space", "v=S1;d=spo rts;n=api;t=1;e=2;s=abc", athenz.NToken{}, "invalid character ' '"},
		{"dotted name", "v=S1;d=sports;n=a.b;t=1;e=2;s=abc", athenz.NToken{}, "simple name"},
		{"bad ip", "v=S1;d=sports;n=api;i=10.0.0;t=1;e=2;s=abc", athenz.NToken{}, "ip address"},
		{"bad key id", "v=S1;d=sports;n=api;k=a/b;t=1;e=2;s=abc", athenz.NToken{}, "key id"},
		{"too long", "v=S1;d=sports;n=api;h=" + strings.Repeat("a", athenz.MaxNTokenLength) + ";t=1;e=2;s=abc", athenz.NToken{}, "limit 8192"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := athenz.ParseNToken(tc.token)
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
			got := *n
			got.IssueTime, got.ExpiryTime = time.Time{}, time.Time{}
			if got.Version != tc.want.Version || got.Domain != tc.want.Domain || got.Name != tc.want.Name ||
				got.KeyID != tc.want.KeyID || got.Hostname != tc.want.Hostname || got.IP != tc.want.IP ||
				got.Salt != tc.want.Salt || got.KeyService != tc.want.KeyService {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if n.IssueTime.Unix() != 1700000000 || n.ExpiryTime.Unix() != 1700003600 {
				t.Errorf("times %v, %v", n.IssueTime, n.ExpiryTime)
			}
		})
	}
}

func TestNTokenVerify(t *testing.T) {
	key := testP256()
	good := signNToken(t, key, nil)
	unsigned, sig, _ := strings.Cut(good, ";s=")
	tests := []struct {
		name    string
		token   string
		pub     crypto.PublicKey
		now     time.Time
		opts    athenz.NTokenOptions
		wantErr error
	}{
		{"valid", good, key.Public(), testNow.Add(time.Minute), athenz.NTokenOptions{}, nil},
		{"rsa key", signNToken(t, testRSA2048(), nil), testRSA2048().Public(), testNow, athenz.NTokenOptions{}, nil},
		{"issued within skew", good, key.Public(), testNow.Add(-299 * time.Second), athenz.NTokenOptions{}, nil},
		{"issued beyond skew", good, key.Public(), testNow.Add(-301 * time.Second), athenz.NTokenOptions{}, athenz.ErrTokenNotYetValid},
		{"custom skew", good, key.Public(), testNow.Add(-20 * time.Second), athenz.NTokenOptions{Skew: 10 * time.Second}, athenz.ErrTokenNotYetValid},
		{"at expiry", good, key.Public(), testNow.Add(time.Hour), athenz.NTokenOptions{}, nil},
		{"expired", good, key.Public(), testNow.Add(time.Hour + time.Second), athenz.NTokenOptions{}, athenz.ErrTokenExpired},
		{"31 days", signNToken(t, key, func(n *athenz.NToken) { n.ExpiryTime = testNow.Add(31 * 24 * time.Hour) }), key.Public(), testNow, athenz.NTokenOptions{}, athenz.ErrTokenLifetime},
		{"30 days", signNToken(t, key, func(n *athenz.NToken) { n.ExpiryTime = testNow.Add(30 * 24 * time.Hour) }), key.Public(), testNow, athenz.NTokenOptions{}, nil},
		{"custom max lifetime", good, key.Public(), testNow, athenz.NTokenOptions{MaxLifetime: 30 * time.Minute}, athenz.ErrTokenLifetime},
		{"expiry before issue", signNToken(t, key, func(n *athenz.NToken) { n.ExpiryTime = testNow.Add(-time.Second) }), key.Public(), testNow, athenz.NTokenOptions{}, athenz.ErrTokenMalformed},
		{"wrong key", good, testP256b().Public(), testNow, athenz.NTokenOptions{}, athenz.ErrBadSignature},
		{"wrong key type", good, testRSA2048().Public(), testNow, athenz.NTokenOptions{}, athenz.ErrBadSignature},
		{"weak key", good, testRSA1024().Public(), testNow, athenz.NTokenOptions{}, athenz.ErrUnsupportedKey},
		{"changed host", strings.Replace(good, "host1", "host2", 1), key.Public(), testNow, athenz.NTokenOptions{}, athenz.ErrBadSignature},
		{"reordered fields", reorder(unsigned) + ";s=" + sig, key.Public(), testNow, athenz.NTokenOptions{}, athenz.ErrBadSignature},
		{"signature of another token", unsigned + ";s=" + strings.SplitN(signNToken(t, key, func(n *athenz.NToken) { n.Name = "web" }), ";s=", 2)[1], key.Public(), testNow, athenz.NTokenOptions{}, athenz.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := athenz.ParseNToken(tc.token)
			if err == nil {
				err = n.Verify(tc.pub, tc.now, tc.opts)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
	if err := new(athenz.NToken).Verify(key.Public(), testNow, athenz.NTokenOptions{}); err == nil {
		t.Error("Verify of a token that was never parsed succeeded")
	}
}

// reorder swaps the first two fields, which any verifier must notice.
func reorder(unsigned string) string {
	f := strings.Split(unsigned, ";")
	f[0], f[1] = f[1], f[0]
	return strings.Join(f, ";")
}

func TestNTokenSignRefusesBadFields(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*athenz.NToken)
		want   string
	}{
		{"no key id", func(n *athenz.NToken) { n.KeyID = "" }, "key id"},
		{"no issue time", func(n *athenz.NToken) { n.IssueTime = time.Time{} }, "issue time"},
		{"semicolon in host", func(n *athenz.NToken) { n.Hostname = "a;s=x" }, "host"},
		{"bad domain", func(n *athenz.NToken) { n.Domain = "a..b" }, "domain name"},
		{"bad version", func(n *athenz.NToken) { n.Version = "Z1" }, "version"},
		{"bad key service", func(n *athenz.NToken) { n.KeyService = "z=s" }, "simple name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &athenz.NToken{Domain: "sports", Name: "api", KeyID: "0", IssueTime: testNow, ExpiryTime: testNow.Add(time.Hour)}
			tc.mutate(n)
			if _, err := n.Sign(testP256()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNTokenKeySource(t *testing.T) {
	tests := []struct {
		name                 string
		version, keyService  string
		domain, service, kid string
	}{
		{"service key", "S1", "", "sports", "api", "v1"},
		{"zts key", "S1", "zts", "sys.auth", "zts", "v1"},
		{"zms key", "S1", "zms", "sys.auth", "zms", "v1"},
		{"user token", "U1", "", "sys.auth", "zms", "v1"},
		{"user token signed by zts", "U1", "zts", "sys.auth", "zts", "v1"},
		{"other key service", "S1", "other", "sports", "api", "v1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := athenz.NToken{Version: tc.version, KeyService: tc.keyService, Domain: "sports", Name: "api", KeyID: "v1"}
			d, s, k := n.KeySource()
			if d != tc.domain || s != tc.service || k != tc.kid {
				t.Errorf("KeySource() = %s, %s, %s; want %s, %s, %s", d, s, k, tc.domain, tc.service, tc.kid)
			}
		})
	}
	if p := (&athenz.NToken{Domain: "sports.prod", Name: "api"}).Principal(); p != "sports.prod.api" {
		t.Errorf("Principal() = %q", p)
	}
}
