package jointoken_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/jointoken"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type stored struct {
	hash            []byte
	domain, service string
	expires         time.Time
	used            bool
}

// fakeBurner is the store's contract in memory. It walks every entry comparing hashes in
// constant time, as any in-memory table of secrets should.
type fakeBurner struct {
	mu     sync.Mutex
	tokens []*stored
	fail   error
}

func (f *fakeBurner) add(t testing.TB, domain, service string, ttl time.Duration) string {
	t.Helper()
	secret, hash, err := jointoken.New()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, &stored{hash: hash, domain: domain, service: service, expires: now.Add(ttl)})
	return secret
}

func (f *fakeBurner) BurnJoinToken(_ context.Context, hash []byte) (string, string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", "", time.Time{}, f.fail
	}
	var found *stored
	for _, s := range f.tokens {
		if subtle.ConstantTimeCompare(s.hash, hash) == 1 {
			found = s
		}
	}
	switch {
	case found == nil:
		return "", "", time.Time{}, fmt.Errorf("burn join token: %w", attestor.ErrNotFound)
	case found.used:
		return "", "", time.Time{}, fmt.Errorf("burn join token: %w", attestor.ErrAlreadyUsed)
	case !found.expires.After(now):
		return "", "", time.Time{}, fmt.Errorf("burn join token: %w", attestor.ErrExpired)
	}
	found.used = true
	return found.domain, found.service, found.expires, nil
}

func newVerifier(t testing.TB, b jointoken.Burner) *jointoken.Verifier {
	t.Helper()
	v, err := jointoken.NewVerifier(jointoken.Config{Burner: b, MaxValidity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func request(secret string) *attestor.Request {
	return &attestor.Request{Provider: "athenz-mesh.join", Domain: "sports", Service: "api", InstanceID: "laptop-7",
		AttestationData: secret, Now: now}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, b *fakeBurner) string
		edit   func(r *attestor.Request)
		reason attestor.Reason
	}{
		{name: "valid", setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "sports", "api", time.Hour) }},
		{name: "request naming no service gets the token's",
			setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "sports", "api", time.Hour) },
			edit:  func(r *attestor.Request) { r.Domain, r.Service = "", "" }},
		{name: "stored in upper case", setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "Sports", "API", time.Hour) }},
		{name: "reused", reason: attestor.ReasonReplayed, setup: func(t *testing.T, b *fakeBurner) string {
			s := b.add(t, "sports", "api", time.Hour)
			if _, err := newVerifier(t, b).Verify(context.Background(), request(s)); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "expired", reason: attestor.ReasonExpired, setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "sports", "api", -time.Second) }},
		{name: "unknown", reason: attestor.ReasonUnknownToken, setup: func(t *testing.T, b *fakeBurner) string {
			s, _, err := jointoken.New()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "for another service", reason: attestor.ReasonIdentityMismatch,
			setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "sports", "web", time.Hour) }},
		{name: "for another domain", reason: attestor.ReasonIdentityMismatch,
			setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "weather", "api", time.Hour) }},
		{name: "store outage", reason: attestor.ReasonUnavailable, setup: func(t *testing.T, b *fakeBurner) string {
			s := b.add(t, "sports", "api", time.Hour)
			b.fail = errors.New("connection refused")
			return s
		}},
		{name: "store returns a bad name", reason: attestor.ReasonUnavailable,
			setup: func(t *testing.T, b *fakeBurner) string { return b.add(t, "sports", "a.b", time.Hour) }},
		{name: "wrong prefix", reason: attestor.ReasonMalformed, setup: func(t *testing.T, b *fakeBurner) string {
			return "xxjt1." + strings.TrimPrefix(b.add(t, "sports", "api", time.Hour), jointoken.Prefix)
		}},
		{name: "truncated", reason: attestor.ReasonMalformed, setup: func(t *testing.T, b *fakeBurner) string {
			s := b.add(t, "sports", "api", time.Hour)
			return s[:len(s)-1]
		}},
		{name: "not base64url", reason: attestor.ReasonMalformed, setup: func(t *testing.T, b *fakeBurner) string {
			return jointoken.Prefix + strings.Repeat("+", 43)
		}},
		{name: "empty", reason: attestor.ReasonMalformed, setup: func(t *testing.T, b *fakeBurner) string { return "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBurner{}
			secret := tc.setup(t, b)
			r := request(secret)
			if tc.edit != nil {
				tc.edit(r)
			}
			res, err := newVerifier(t, b).Verify(context.Background(), r)
			if tc.reason != "" {
				var e *attestor.Error
				if res != nil || !errors.As(err, &e) || e.Reason != tc.reason || e.Message == "" {
					t.Fatalf("got %+v, %v; want reason %s", res, err, tc.reason)
				}
				if secret != "" && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[len(jointoken.Prefix):])) {
					t.Fatalf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Domain != "sports" || res.Service != "api" || res.InstanceID != "laptop-7" || !res.Refreshable ||
				res.MaxValidity != time.Hour || len(res.Attributes["token_hash"]) != 16 {
				t.Fatalf("result %+v", res)
			}
			for _, v := range res.Attributes {
				if strings.Contains(secret, v) {
					t.Fatalf("attribute %q is part of the secret", v)
				}
			}
		})
	}
}

// TestBurnedOnMismatch: a token presented for the wrong service is spent.
func TestBurnedOnMismatch(t *testing.T) {
	b := &fakeBurner{}
	s := b.add(t, "sports", "api", time.Hour)
	r := request(s)
	r.Service = "web"
	v := newVerifier(t, b)
	if _, err := v.Verify(context.Background(), r); attestor.ReasonOf(err) != attestor.ReasonIdentityMismatch {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), request(s)); attestor.ReasonOf(err) != attestor.ReasonReplayed {
		t.Fatalf("after a mismatch: %v", err)
	}
}

func TestConcurrentBurn(t *testing.T) {
	b := &fakeBurner{}
	s := b.add(t, "sports", "api", time.Hour)
	v := newVerifier(t, b)
	var ok, replayed atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			switch _, err := v.Verify(context.Background(), request(s)); attestor.ReasonOf(err) {
			case "":
				ok.Add(1)
			case attestor.ReasonReplayed:
				replayed.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 15 {
		t.Fatalf("%d accepted, %d replays", ok.Load(), replayed.Load())
	}
}

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, h, err := jointoken.New()
		if err != nil {
			t.Fatal(err)
		}
		if err := jointoken.Check(s); err != nil || len(s) != jointoken.Length || !strings.HasPrefix(s, "amjt1.") {
			t.Fatalf("token %q: %v", s, err)
		}
		if subtle.ConstantTimeCompare(h, jointoken.Hash(s)) != 1 || len(h) != 32 {
			t.Fatal("hash does not match Hash(secret)")
		}
		if seen[s] {
			t.Fatal("repeated token")
		}
		seen[s] = true
	}
}

func TestConfig(t *testing.T) {
	if _, err := jointoken.NewVerifier(jointoken.Config{}); err == nil {
		t.Error("no burner accepted")
	}
	if _, err := jointoken.NewVerifier(jointoken.Config{Burner: &fakeBurner{}, MaxValidity: -1}); err == nil {
		t.Error("negative validity accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := &fakeBurner{}
	if _, err := newVerifier(t, b).Verify(ctx, request(b.add(t, "sports", "api", time.Hour))); attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("cancelled: %v", err)
	}
}
