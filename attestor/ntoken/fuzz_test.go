package ntoken_test

import (
	"context"
	"errors"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// FuzzVerify: no attestation data panics, and every refusal is a complete *attestor.Error.
// The n-token parser itself is fuzzed in package athenz.
func FuzzVerify(f *testing.F) {
	f.Add(token(f, keys().api, nil))
	f.Add("v=S1;d=sports;n=api;k=v1;a=1;t=1;e=2;s=x")
	f.Add("v=S1;d=sports;n=api;s=;bk=1")
	f.Add(";s=")
	v := newVerifier(f)
	f.Fuzz(func(t *testing.T, s string) {
		r := &attestor.Request{Domain: "sports", Service: "api", AttestationData: s, PublicKey: keys().api.Public(), Now: now}
		res, err := v.Verify(context.Background(), r)
		if err != nil {
			var e *attestor.Error
			if res != nil || !errors.As(err, &e) || e.Reason == "" || e.Message == "" {
				t.Fatalf("refusal %v is not a complete *attestor.Error", err)
			}
			return
		}
		if res.Domain != "sports" || res.Service != "api" || res.Refreshable {
			t.Fatalf("accepted %q as %+v", s, res)
		}
	})
}
