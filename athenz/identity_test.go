package athenz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestIdentityBuilders(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"principal", athenz.Principal("sports.prod", "api"), "sports.prod.api"},
		{"dns name", athenz.ServiceDNSName("sports.prod", "api", "athenz.cloud"), "api.sports-prod.athenz.cloud"},
		{"dns name, dotted suffix", athenz.ServiceDNSName("sports", "api", ".athenz.cloud"), "api.sports.athenz.cloud"},
		{"instance uri", athenz.InstanceIDURI("sys.auth.zts", "i-0abc"), "athenz://instanceid/sys.auth.zts/i-0abc"},
		{"instance dns", athenz.InstanceIDDNSName("i-0abc", ".zts.athenz.cloud"), "i-0abc.instanceid.athenz.zts.athenz.cloud"},
		{"role uri", athenz.RoleURI("sports", "readers"), "athenz://role/sports/readers"},
		{"principal uri", athenz.PrincipalURI("media.api"), "athenz://principal/media.api"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseInstanceIDURI(t *testing.T) {
	tests := []struct {
		name, uri, provider, id, wantErr string
	}{
		{"simple", "athenz://instanceid/sys.auth.zts/i-0abc", "sys.auth.zts", "i-0abc", ""},
		{"path element characters", "athenz://instanceid/athenz.aws.us-west-2/a~b=c+d@e$f,g:h.i_j", "athenz.aws.us-west-2", "a~b=c+d@e$f,g:h.i_j", ""},
		{"no id", "athenz://instanceid/sys.auth.zts/", "", "", "empty instance id"},
		{"no provider", "athenz://instanceid//id", "", "", "service name"},
		{"no slash", "athenz://instanceid/provider", "", "", "want athenz://instanceid/"},
		{"dot dot", "athenz://instanceid/sys.auth.zts/..", "", "", `instance id ".."`},
		{"traversal", "athenz://instanceid/sys.auth.zts/../../etc", "", "", "invalid character '/'"},
		{"extra segment", "athenz://instanceid/p/a/b", "", "", "invalid character '/'"},
		{"escaped slash", "athenz://instanceid/p/a%2Fb", "", "", "want athenz://instanceid/"},
		{"query", "athenz://instanceid/p/a?b", "", "", "want athenz://instanceid/"},
		{"space", "athenz://instanceid/p/a b", "", "", "want athenz://instanceid/"},
		{"wrong host", "athenz://instancename/p/a", "", "", "want athenz://instanceid/"},
		{"upper case host", "athenz://INSTANCEID/p/a", "", "", "want athenz://instanceid/"},
		{"bad provider", "athenz://instanceid/p..q/a", "", "", "service name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			provider, id, err := athenz.ParseInstanceIDURI(tc.uri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, athenz.ErrInvalidIdentity) {
					t.Fatalf("error %v, want an ErrInvalidIdentity containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || provider != tc.provider || id != tc.id {
				t.Fatalf("got %q, %q, %v; want %q, %q", provider, id, err, tc.provider, tc.id)
			}
			if back := athenz.InstanceIDURI(provider, id); back != tc.uri {
				t.Errorf("round trip %q", back)
			}
		})
	}
}

func TestParseInstanceIDDNSName(t *testing.T) {
	tests := []struct {
		name, dns, id string
		ok            bool
	}{
		{"simple", "i-0abc.instanceid.athenz.zts.athenz.cloud", "i-0abc", true},
		{"dotted id", "pod.ns.instanceid.athenz.cloud", "pod.ns", true},
		{"first tag wins", "a.instanceid.athenz.b.instanceid.athenz.c", "a", true},
		{"no suffix", "a.instanceid.athenz.", "", false},
		{"no id", ".instanceid.athenz.cloud", "", false},
		{"not an instance name", "api.sports.athenz.cloud", "", false},
		{"empty label", "a..b.instanceid.athenz.cloud", "", false},
		{"wildcard", "*.instanceid.athenz.cloud", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := athenz.ParseInstanceIDDNSName(tc.dns)
			if id != tc.id || ok != tc.ok {
				t.Errorf("got %q, %v; want %q, %v", id, ok, tc.id, tc.ok)
			}
		})
	}
}

func TestParseRoleURIAndCN(t *testing.T) {
	tests := []struct {
		name, uri, domain, role, wantErr string
	}{
		{"simple", "athenz://role/sports/readers", "sports", "readers", ""},
		{"dotted", "athenz://role/sports.prod/readers.eu", "sports.prod", "readers.eu", ""},
		{"traversal", "athenz://role/sports/../admin", "", "", "entity name"},
		{"missing role", "athenz://role/sports", "", "", "want athenz://role/"},
		{"empty role", "athenz://role/sports/", "", "", "entity name"},
		{"bad domain", "athenz://role/spo rts/readers", "", "", "want athenz://role/"},
		{"escape", "athenz://role/sports/read%65rs", "", "", "want athenz://role/"},
		{"principal uri", "athenz://principal/sports.api", "", "", "want athenz://role/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, r, err := athenz.ParseRoleURI(tc.uri)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, athenz.ErrInvalidIdentity) {
					t.Fatalf("error %v, want an ErrInvalidIdentity containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || d != tc.domain || r != tc.role || athenz.RoleURI(d, r) != tc.uri {
				t.Fatalf("got %q, %q, %v", d, r, err)
			}
		})
	}
	cns := []struct {
		cn, domain, role string
		ok               bool
	}{
		{"sports:role.readers", "sports", "readers", true},
		{"sports.prod:role.readers.eu", "sports.prod", "readers.eu", true},
		{"sports:role.", "", "", false},
		{"sports:group.admins", "", "", false},
		{"sports.api", "", "", false},
		{"spo rts:role.readers", "", "", false},
		{"sports:role.read ers", "", "", false},
		{"sports:role.a:role.b", "", "", false},
	}
	for _, tc := range cns {
		d, r, ok := athenz.ParseRoleCertCN(tc.cn)
		if d != tc.domain || r != tc.role || ok != tc.ok {
			t.Errorf("ParseRoleCertCN(%q) = %q, %q, %v", tc.cn, d, r, ok)
		}
	}
}

func TestParsePrincipalURI(t *testing.T) {
	tests := []struct {
		uri, want, wantErr string
	}{
		{"athenz://principal/sports.api", "sports.api", ""},
		{"athenz://principal/sports.prod.api", "sports.prod.api", ""},
		{"athenz://principal/user.joe", "user.joe", ""},
		{"athenz://principal/sports", "", "want <domain>.<service>"},
		{"athenz://principal/sports.a-b.c_d", "sports.a-b.c_d", ""},
		{"athenz://principal/../sports.api", "", "domain name"},
		{"athenz://principal/sports/api", "", "want <domain>.<service>"},
		{"athenz://principal/a/b.api", "", "domain name"},
		{"athenz://principal/sports.api?x", "", "want athenz://principal/"},
		{"athenz://proxyuser/sports.api", "", "want athenz://principal/"},
	}
	for _, tc := range tests {
		got, err := athenz.ParsePrincipalURI(tc.uri)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, athenz.ErrInvalidIdentity) {
				t.Errorf("%s: error %v, want an ErrInvalidIdentity containing %q", tc.uri, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || athenz.PrincipalURI(got) != tc.uri {
			t.Errorf("%s: got %q, %v", tc.uri, got, err)
		}
	}
}
