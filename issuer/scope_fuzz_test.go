package issuer

import (
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzParseScope feeds arbitrary access token scopes to the parser: it must never panic,
// and whatever it accepts names one valid domain and valid role names only.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"sports:domain", "sports:role.readers sports:role.writers", "openid sports:service.api sports:role.r",
		"a:domain b:domain", "", " ", ":", "sports:role.", "sports:role.a*", "SPORTS:ROLE.X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		sc, err := parseScope(raw)
		if err != nil {
			return
		}
		if !athenz.IsDomainName(sc.domain) || (!sc.all && len(sc.roles) == 0) {
			t.Fatalf("accepted %q as %+v", raw, sc)
		}
		for _, r := range sc.roles {
			if !athenz.IsEntityName(r) {
				t.Fatalf("accepted role %q from %q", r, raw)
			}
		}
	})
}
