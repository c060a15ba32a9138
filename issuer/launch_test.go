package issuer_test

import (
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// TestLaunchExample checks the launch grants of the example domain files that
// docs/issuer.md shows, with the requests the issuer makes.
func TestLaunchExample(t *testing.T) {
	domains, err := policy.LoadDir("testdata/launch")
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(domains, policy.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policy.NewEvaluator(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		principal, action, resource string
		want                        bool
	}{
		{"athenz-mesh.k8s.prod", "launch", "sys.auth:instance", true},
		{"sys.auth.zts", "launch", "sys.auth:instance", true},
		{"athenz-mesh.other", "launch", "sys.auth:instance", false},
		{"athenz-mesh.k8s.prod", "launch", "sports:service.web", true},
		{"sys.auth.zts", "launch", "sports:service.api", true},
		{"sys.auth.zts", "launch", "sports:service.web", false},
		{"sports.ops", "update", "sports:service.web", true},
		{"sports.api", "update", "sports:service.web", false},
	} {
		d := ev.Decide(policy.Request{Principal: tc.principal, Action: tc.action, Resource: tc.resource, Time: time.Now()})
		if d.Allowed != tc.want {
			t.Errorf("%s %s %s: allowed %v (%s), want %v", tc.principal, tc.action, tc.resource, d.Allowed, d.Reason, tc.want)
		}
	}
}
