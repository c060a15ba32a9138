package issuer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Domain documents (ZMS DomainData) for the tests.
type (
	member struct {
		MemberName string `json:"memberName"`
	}
	role struct {
		Name        string   `json:"name"`
		RoleMembers []member `json:"roleMembers"`
	}
	assertion struct {
		Role     string `json:"role"`
		Action   string `json:"action"`
		Resource string `json:"resource"`
		Effect   string `json:"effect,omitempty"`
	}
	pol struct {
		Name       string      `json:"name"`
		Assertions []assertion `json:"assertions"`
	}
	service struct {
		Name       string              `json:"name"`
		PublicKeys []map[string]string `json:"publicKeys,omitempty"`
	}
	domainDoc struct {
		Name     string    `json:"name"`
		Modified string    `json:"modified,omitempty"`
		Roles    []role    `json:"roles"`
		Policies any       `json:"policies"`
		Services []service `json:"services,omitempty"`
	}
)

func roleOf(domain, name string, members ...string) role {
	r := role{Name: domain + ":role." + name}
	for _, m := range members {
		r.RoleMembers = append(r.RoleMembers, member{m})
	}
	return r
}

func policiesOf(domain string, ps ...pol) any {
	return map[string]any{"contents": map[string]any{"domain": domain, "policies": ps}}
}

func svc(t testing.TB, principal string) service {
	return service{Name: principal, PublicKeys: []map[string]string{{"key": entry(t, serviceKey(principal)), "id": "0"}}}
}

// JoinProvider is the join token provider of the test config.
const joinProvider = "athenz-mesh.test.join"

// testDomains are the domains every test server loads.
func testDomains(t testing.TB) []domainDoc {
	return []domainDoc{
		{
			Name: "sys.auth", Modified: "2026-01-01T00:00:00.000Z",
			Roles: []role{roleOf("sys.auth", "providers", "sys.auth.zts", joinProvider)},
			Policies: policiesOf("sys.auth", pol{Name: "sys.auth:policy.providers", Assertions: []assertion{
				{Role: "sys.auth:role.providers", Action: "launch", Resource: "sys.auth:instance"},
			}}),
		},
		{
			Name: "sports", Modified: "2026-01-02T03:04:05.600Z",
			Roles: []role{
				roleOf("sports", "providers", "sys.auth.zts", joinProvider),
				roleOf("sports", "admins", "sports.ops"),
				roleOf("sports", "readers", "sports.api", "sports.ops", "sports.rsa"),
				roleOf("sports", "writers", "sports.ops"),
			},
			Policies: policiesOf("sports",
				pol{Name: "sports:policy.launch", Assertions: []assertion{{Role: "sports:role.providers", Action: "launch", Resource: "sports:service.*"}}},
				pol{Name: "sports:policy.admin", Assertions: []assertion{{Role: "sports:role.admins", Action: "update", Resource: "sports:service.*"}}},
				pol{Name: "sports:policy.read", Assertions: []assertion{
					{Role: "sports:role.readers", Action: "read", Resource: "sports:data.*"},
					{Role: "sports:role.writers", Action: "delete", Resource: "sports:data.locked", Effect: "DENY"},
				}},
			),
			Services: []service{svc(t, "sports.api"), svc(t, "sports.ops"), svc(t, "sports.web"), svc(t, "sports.rsa")},
		},
		{
			Name: "weather", Modified: "2026-01-03T00:00:00.000Z",
			Roles: []role{roleOf("weather", "readers", "sports.api")},
			Policies: policiesOf("weather", pol{Name: "weather:policy.read", Assertions: []assertion{
				{Role: "weather:role.readers", Action: "read", Resource: "weather:forecast"},
			}}),
			Services: []service{svc(t, "weather.temp")},
		},
	}
}

func writeDomain(t testing.TB, dir string, d domainDoc) {
	t.Helper()
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+d.Name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, d.Name+".json")); err != nil {
		t.Fatal(err)
	}
}
