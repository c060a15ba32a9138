package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// plainDomain has CompiledDomain's fields but not its MarshalJSON method, so
// encoding/json marshals it by reflection: the reference the fast encoder must equal.
type plainDomain CompiledDomain

func TestCompiledDomainMarshalMatchesEncodingJSON(t *testing.T) {
	checkMarshalMatches(t, map[string][]*Domain{
		"hand-written": testDomains(),
		"html and unicode": {{Name: "odd", Roles: []*Role{role("odd:role.r", rm("user.<b>&é"))},
			Policies: policies("odd", &Policy{Name: "odd:policy.p", Assertions: []*Assertion{
				assertion("odd:role.r", "read\"x", "odd:a\\b\t*", Allow),
			}})}},
	})
	empty, _ := json.Marshal(&CompiledDomain{})
	plain, _ := json.Marshal(&plainDomain{})
	if !bytes.Equal(empty, plain) {
		t.Fatalf("empty domain: fast %s, slow %s", empty, plain)
	}
}

// checkMarshalMatches compiles each world and compares the fast encoder with the
// reflective one, and checks that the output decodes back to the same value.
func checkMarshalMatches(t *testing.T, worlds map[string][]*Domain) {
	t.Helper()
	for name, domains := range worlds {
		t.Run(name, func(t *testing.T) {
			c, err := Compile(domains, CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for dn, cd := range c.Domains {
				fast, err := json.Marshal(cd)
				if err != nil {
					t.Fatal(err)
				}
				slow, err := json.Marshal((*plainDomain)(cd))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(fast, slow) {
					t.Fatalf("domain %s:\nfast %s\nslow %s", dn, fast, slow)
				}
				if fresh := cd.encode(); !bytes.Equal(fresh, slow) {
					t.Fatalf("domain %s: uncached encoding differs:\nfast %s\nslow %s", dn, fresh, slow)
				}
				var back CompiledDomain
				if err := json.Unmarshal(fast, &back); err != nil {
					t.Fatal(err)
				}
				back.encoded = cd.encoded // the cache is not part of the JSON
				if !reflect.DeepEqual(&back, cd) {
					t.Fatalf("domain %s does not survive a JSON round trip", dn)
				}
			}
		})
	}
}
