package attestor_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// prefixVerifier recognizes data by prefix and accepts it as its own service.
type prefixVerifier struct{ prefix, service string }

func (p prefixVerifier) Recognizes(data string) bool { return strings.HasPrefix(data, p.prefix) }

func (p prefixVerifier) Verify(_ context.Context, r *attestor.Request) (*attestor.Result, error) {
	return &attestor.Result{Domain: "sports", Service: p.service}, nil
}

func TestByFormat(t *testing.T) {
	v := attestor.ByFormat(prefixVerifier{"v=", "ntoken"}, prefixVerifier{"eyJ", "register"})
	for data, want := range map[string]string{"v=S1;...": "ntoken", "eyJhbGci.a.b": "register", "amjt1.x": "", "": ""} {
		res, err := v.Verify(context.Background(), &attestor.Request{Provider: "sys.auth.zts", AttestationData: data})
		switch {
		case want == "" && attestor.ReasonOf(err) != attestor.ReasonMalformed:
			t.Errorf("%q: %v", data, err)
		case want != "" && (err != nil || res.Service != want):
			t.Errorf("%q: %+v, %v; want %s", data, res, err, want)
		}
	}
}

func TestErrors(t *testing.T) {
	cause := fmt.Errorf("store: %w", attestor.ErrAlreadyUsed)
	e := attestor.Wrap(attestor.ReasonReplayed, cause, "token was used before")
	wrapped := fmt.Errorf("register: %w", e)
	if attestor.ReasonOf(wrapped) != attestor.ReasonReplayed || attestor.MessageOf(wrapped) != "token was used before" {
		t.Fatalf("reason %q, message %q", attestor.ReasonOf(wrapped), attestor.MessageOf(wrapped))
	}
	if !errors.Is(wrapped, attestor.ErrAlreadyUsed) {
		t.Error("cause not reachable through errors.Is")
	}
	if got := e.Error(); got != "attestation refused (replayed): token was used before: store: already used" {
		t.Errorf("Error() = %q", got)
	}
	plain := errors.New("pq: connection reset at 10.0.0.5")
	if attestor.ReasonOf(plain) != attestor.ReasonUnavailable || strings.Contains(attestor.MessageOf(plain), "10.0.0.5") {
		t.Error("an error without a reason must count as unavailable and keep its text from the caller")
	}
	if attestor.ReasonOf(nil) != "" || attestor.MessageOf(nil) != "" {
		t.Error("nil has a reason")
	}
	u := attestor.Unavailable("the store", context.DeadlineExceeded)
	if u.Reason != attestor.ReasonUnavailable || !strings.Contains(u.Message, "timed out") || !errors.Is(u, context.DeadlineExceeded) {
		t.Errorf("Unavailable: %+v", u)
	}
	if r := attestor.Refusef(attestor.ReasonMalformed, "bad %s", "thing"); r.Message != "bad thing" || r.Err != nil {
		t.Errorf("Refusef: %+v", r)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name            string
		req             attestor.Request
		domain, service string
		instance        string
		ok              bool
	}{
		{name: "same", req: attestor.Request{Domain: "sports", Service: "api", InstanceID: "i"}, domain: "sports", service: "api", instance: "i", ok: true},
		{name: "ASCII case", req: attestor.Request{Domain: "Sports", Service: "API"}, domain: "sports", service: "api", ok: true},
		{name: "names nothing", req: attestor.Request{}, domain: "sports", service: "api", instance: "i", ok: true},
		{name: "other service", req: attestor.Request{Domain: "sports", Service: "web"}, domain: "sports", service: "api"},
		{name: "domain only", req: attestor.Request{Domain: "sports"}, domain: "sports", service: "api"},
		{name: "long s", req: attestor.Request{Domain: "\u017fports", Service: "api"}, domain: "sports", service: "api"},
		{name: "kelvin sign", req: attestor.Request{Domain: "sports", Service: "\u212aapi"}, domain: "sports", service: "kapi"},
		{name: "instance case", req: attestor.Request{InstanceID: "I"}, domain: "sports", service: "api", instance: "i"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.MatchService(tc.domain, tc.service)
			if err == nil {
				err = tc.req.MatchInstanceID(tc.instance)
			}
			if (err == nil) != tc.ok || (err != nil && attestor.ReasonOf(err) != attestor.ReasonIdentityMismatch) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestAfterUse(t *testing.T) {
	for _, a := range []attestor.AfterUse{"", attestor.AfterUseKeep, attestor.AfterUseRemove, attestor.AfterUseTruncate} {
		if !a.Valid() {
			t.Errorf("%q invalid", a)
		}
	}
	if attestor.AfterUse("shred").Valid() {
		t.Error("shred valid")
	}
}
