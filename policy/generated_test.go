package policy_test

import (
	"testing"

	"github.com/athenz-mesh/athenz-mesh/policy"
	"github.com/athenz-mesh/athenz-mesh/policy/policytest"
)

func TestGeneratedWorldMarshalsLikeEncodingJSON(t *testing.T) {
	worlds := map[string][]*policy.Domain{}
	for _, seed := range []uint64{1, 2, 3} {
		worlds["seed "+string(rune('0'+seed))] = policytest.New(seed, policytest.Shape{}).Domains()
	}
	policy.CheckMarshalMatches(t, worlds)
}

// The generator must only produce domains that the loader would accept, or the
// differential test would exercise inputs no user can load.
func TestGeneratedDomainsAreValid(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		for _, d := range policytest.New(seed, policytest.Shape{}).Domains() {
			if err := policy.ValidateDomain(d); err != nil {
				t.Fatalf("seed %d, domain %s: %v", seed, d.Name, err)
			}
		}
	}
}
