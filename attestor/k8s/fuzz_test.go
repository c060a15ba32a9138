package k8s

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzParseClaims: the token claims parser never panics, and whatever it accepts names a
// valid namespace, service account and pod, with a subject that repeats them.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(`{"aud":["athenz-mesh"],"exp":1800003600,"iat":1800000000,"iss":"https://kubernetes.default.svc.cluster.local","jti":"j","kubernetes.io":{"namespace":"sports","node":{"name":"n","uid":"u"},"pod":{"name":"p","uid":"6f1c3a52-0d8e"},"serviceaccount":{"name":"api","uid":"u1"},"warnafter":1800003000},"nbf":1800000000,"sub":"system:serviceaccount:sports:api"}`))
	f.Add([]byte(`{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"default","sub":"system:serviceaccount:default:default"}`))
	f.Add([]byte(`{"aud":"x","exp":2,"iat":1,"iss":"i","sub":"s","kubernetes.io":{"namespace":"a","serviceaccount":{"name":"b","uid":"c"}}}`))
	f.Add([]byte(`{"kubernetes.io":{"pod":null}}`))
	f.Add([]byte(`{"aud":[],"exp":1e3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseClaims(b)
		if err != nil {
			return
		}
		id := c.identity
		if !isDNSLabel(id.namespace) || !isDNSSubdomain(id.serviceAccount) || !isDNSSubdomain(id.podName) ||
			!isUID(id.podUID) || !isUID(id.serviceAccountUID) || len(c.audience) == 0 || c.expiry <= c.issuedAt || c.issuedAt <= 0 {
			t.Fatalf("accepted %s as %+v", b, c)
		}
		if c.subject != "system:serviceaccount:"+id.namespace+":"+id.serviceAccount {
			t.Fatalf("subject %q for %+v", c.subject, id)
		}
		if _, _, err := athenz.ParseInstanceIDURI(athenz.InstanceIDURI("p", id.podUID)); err != nil {
			t.Fatalf("pod uid %q is no instance id: %v", id.podUID, err)
		}
		if !json.Valid(b) {
			t.Fatal("accepted invalid JSON")
		}
	})
}

// FuzzMapping: Map never panics and only ever returns valid Athenz names, never a system
// domain through the rule.
func FuzzMapping(f *testing.F) {
	f.Add("sports--prod", "api")
	f.Add("sys--auth", "zts")
	f.Add("a----b", "c.d")
	m := &Mapping{
		Entries: []MappingEntry{{Namespace: "payments", ServiceAccount: "*", Domain: "finance"}},
		Rule:    &NamingRule{Separator: "--"},
	}
	f.Fuzz(func(t *testing.T, ns, sa string) {
		d, s, ok := m.Map(ns, sa)
		if !ok {
			return
		}
		if !athenz.IsDomainName(d) || !athenz.IsSimpleName(s) || d != strings.ToLower(d) || s != strings.ToLower(s) {
			t.Fatalf("Map(%q, %q) = %q, %q", ns, sa, d, s)
		}
		if ns != "payments" && (d == "sys" || strings.HasPrefix(d, "sys.")) {
			t.Fatalf("rule mapped %q to system domain %q", ns, d)
		}
	})
}

// FuzzParseUsername: the TokenReview user name parser accepts only service accounts.
func FuzzParseUsername(f *testing.F) {
	f.Add("system:serviceaccount:sports:api")
	f.Add("system:serviceaccount:sports:api:extra")
	f.Add("kubernetes-admin")
	f.Fuzz(func(t *testing.T, u string) {
		ns, sa, ok := parseUsername(u)
		if ok && (u != serviceAccountPrefix+ns+":"+sa || !isDNSLabel(ns) || !isDNSSubdomain(sa)) {
			t.Fatalf("parseUsername(%q) = %q, %q", u, ns, sa)
		}
	})
}
