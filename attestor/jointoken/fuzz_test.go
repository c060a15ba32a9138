package jointoken_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
)

// FuzzVerify: Check and Verify never panic on any input, refusals are complete
// *attestor.Errors, and only the one created token is accepted.
func FuzzVerify(f *testing.F) {
	b := &fakeBurner{}
	secret := b.add(f, "sports", "api", time.Hour)
	f.Add(secret)
	f.Add(jointoken.Prefix)
	f.Add(jointoken.Prefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Add("amjt1.=")
	v := newVerifier(f, b)
	f.Fuzz(func(t *testing.T, s string) {
		res, err := v.Verify(context.Background(), request(s))
		if err != nil {
			var e *attestor.Error
			if res != nil || !errors.As(err, &e) || e.Reason == "" || e.Message == "" {
				t.Fatalf("refusal %v is not a complete *attestor.Error", err)
			}
			return
		}
		if s != secret || jointoken.Check(s) != nil {
			t.Fatalf("accepted %q", s)
		}
	})
}
