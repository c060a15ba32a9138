package sds

import (
	"slices"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzTokenAPIQuery checks that any query string either is refused or gives parameters
// that pass the Athenz validators, within the API's bounds.
func FuzzTokenAPIQuery(f *testing.F) {
	for _, s := range []string{
		"domain=sports&role=readers", "domain=Sports&role=a,b&role=b&expires_in=60&identity=sports.api",
		"domain=%zz", "role=,", "identity=a.b.c", "expires_in=2592000", "a=b;c=d", "domain=sports&domain=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, set := range []tapiParamSet{{}, {domain: true, expiresIn: true}} {
			p, perr := parseTapiQuery(raw, set)
			if perr != nil {
				if perr.status != 400 && perr.status != 414 {
					t.Fatalf("status %d for a bad query", perr.status)
				}
				continue
			}
			if p.identity != "" && validIdentityName(p.identity) != nil {
				t.Fatalf("accepted identity %q", p.identity)
			}
			if set.domain && !athenz.IsDomainName(p.domain) {
				t.Fatalf("accepted domain %q", p.domain)
			}
			if !set.domain && (p.domain != "" || len(p.roles) > 0) {
				t.Fatalf("domain or roles accepted where not taken: %+v", p)
			}
			if len(p.roles) > tapiMaxRoles || !slices.IsSorted(p.roles) || len(slices.Compact(slices.Clone(p.roles))) != len(p.roles) {
				t.Fatalf("roles %q: not sorted, unique and bounded", p.roles)
			}
			for _, r := range p.roles {
				if !athenz.IsEntityName(r) {
					t.Fatalf("accepted role %q", r)
				}
			}
			if p.expiresIn < 0 || p.expiresIn > tapiMaxLifetime || p.expiresIn%time.Second != 0 {
				t.Fatalf("expires_in %s", p.expiresIn)
			}
		}
	})
}
