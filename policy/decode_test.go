package policy

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/AthenZ/athenz/clients/go/zms"
	"github.com/AthenZ/athenz/clients/go/zts"
)

// zmsPlaces says where each ZMS struct sits in a DomainData document: the path of keys
// (with "[]" for the first element of a list) from the document root.
var zmsPlaces = []struct {
	v    any
	path []string
}{
	{zms.SignedDomain{}, nil},
	{zms.DomainData{}, []string{"domain"}},
	{zms.Role{}, []string{"domain", "roles", "[]"}},
	{zms.RoleMember{}, []string{"domain", "roles", "[]", "roleMembers", "[]"}},
	{zms.Group{}, []string{"domain", "groups", "[]"}},
	{zms.GroupMember{}, []string{"domain", "groups", "[]", "groupMembers", "[]"}},
	{zms.SignedPolicies{}, []string{"domain", "policies"}},
	{zms.DomainPolicies{}, []string{"domain", "policies", "contents"}},
	{zms.Policy{}, []string{"domain", "policies", "contents", "policies", "[]"}},
	{zms.Assertion{}, []string{"domain", "policies", "contents", "policies", "[]", "assertions", "[]"}},
	{zms.ServiceIdentity{}, []string{"domain", "services", "[]"}},
	{zms.PublicKeyEntry{}, []string{"domain", "services", "[]", "publicKeys", "[]"}},
	{zms.Entity{}, []string{"domain", "entities", "[]"}},
}

// place builds a document with leaf at path.
func place(path []string, leaf any) any {
	if len(path) == 0 {
		return leaf
	}
	inner := place(path[1:], leaf)
	if path[0] == "[]" {
		return []any{inner}
	}
	return map[string]any{path[0]: inner}
}

// fieldNames returns the keys a struct type is written with: each JSON name, and the
// lower-cased Go field name (or yaml tag name) that zms-cli's yaml.v2 encoding writes.
func fieldNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
		yname, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if yname == "" {
			yname = strings.ToLower(f.Name)
		}
		if yname != "-" {
			names = append(names, yname)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// unknownFields parses doc as a domain file and returns its "unknown field" problems.
func unknownFields(t *testing.T, doc any, parse func([]byte) error) []string {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if le, ok := asLoadError(parse(data)); ok {
		for _, p := range le.Problems {
			if strings.Contains(p.Message, "unknown field") {
				out = append(out, p.Message)
			}
		}
	}
	return out
}

func asLoadError(err error) (*LoadError, bool) {
	if err == nil {
		return nil, false
	}
	le, ok := err.(*LoadError)
	return le, ok
}

// TestZMSFieldsAccepted requires every field of the real ZMS structs, under its JSON name
// and under its zms-cli YAML name, to be accepted where that struct appears in a domain
// document: decoded, or accepted and ignored (a field whose value is skipped, like
// "entities" or "tags", accepts all of its contents). Each field is given a null value,
// which every field accepts as "absent".
func TestZMSFieldsAccepted(t *testing.T) {
	parse := func(data []byte) error { _, err := ParseDomain("zms.json", data); return err }
	for _, p := range zmsPlaces {
		typ := reflect.TypeOf(p.v)
		leaf := func(name string) map[string]any {
			m := map[string]any{name: nil}
			if p.path == nil { // a SignedDomain is recognised by its "domain" member
				m["domain"] = map[string]any{}
			}
			return m
		}
		for _, name := range fieldNames(typ) {
			if unknown := unknownFields(t, place(p.path, leaf(name)), parse); len(unknown) > 0 {
				t.Errorf("zms.%s field %q: %v", typ.Name(), name, unknown)
			}
		}
		// And the check is live: a field ZMS does not define is refused at that place
		// (except inside an entity, whose whole value is skipped).
		if unknown := unknownFields(t, place(p.path, leaf("noSuchField")), parse); len(unknown) != 1 && typ != reflect.TypeFor[zms.Entity]() {
			t.Errorf("zms.%s: an unknown field gave %v, want one problem", typ.Name(), unknown)
		}
	}
}

// TestZTSFieldsAccepted does the same for .pol files against the real ZTS structs,
// except that policy version and active are refused, with their own message, because
// the ZTS signature does not cover them.
func TestZTSFieldsAccepted(t *testing.T) {
	places := []struct {
		v    any
		path []string
	}{
		{zts.DomainSignedPolicyData{}, nil},
		{zts.SignedPolicyData{}, []string{"signedPolicyData"}},
		{zts.PolicyData{}, []string{"signedPolicyData", "policyData"}},
		{zts.Policy{}, []string{"signedPolicyData", "policyData", "policies", "[]"}},
		{zts.Assertion{}, []string{"signedPolicyData", "policyData", "policies", "[]", "assertions", "[]"}},
	}
	parse := func(data []byte) error { _, err := ParseSignedPolicyData("zts.pol", data, nil); return err }
	for _, p := range places {
		typ := reflect.TypeOf(p.v)
		for _, name := range fieldNames(typ) {
			if unknown := unknownFields(t, place(p.path, map[string]any{name: nil}), parse); len(unknown) > 0 {
				t.Errorf("zts.%s field %q: %v", typ.Name(), name, unknown)
			}
		}
	}
	for field, value := range map[string]any{"version": "1", "active": true} {
		doc := place([]string{"signedPolicyData", "policyData", "policies", "[]"}, map[string]any{"name": "d:policy.p", field: value})
		_, err := ParseSignedPolicyData("zts.pol", mustJSON(t, doc), nil)
		if err == nil || !strings.Contains(err.Error(), "not covered by the ZTS signature") {
			t.Errorf("policy %s in a .pol file: %v, want it refused as unsigned", field, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
