package ztstoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

type nopOnce struct{}

func (nopOnce) UseOnce(context.Context, string, string, time.Time) error { return nil }

// FuzzVerify: no input panics, every refusal is an *attestor.Error with a reason and a
// message, and only tokens signed by the trusted key pass.
func FuzzVerify(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	good, err := Mint(&Claims{IssuedAt: now.Unix(), Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1"}, key, "k")
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(Config{Keys: athenz.StaticKeySet{"k": key.Public()}, Once: nopOnce{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsiLCJ0eXAiOiJKV1QifQ.e30.AAAA")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		r := &attestor.Request{Provider: "sys.auth.zts", Domain: "sports", Service: "api", InstanceID: "i-1", AttestationData: s, Now: now}
		res, err := v.Verify(context.Background(), r)
		if err != nil {
			var e *attestor.Error
			if res != nil || !errors.As(err, &e) || e.Reason == "" || e.Message == "" {
				t.Fatalf("refusal %v (result %+v) is not a complete *attestor.Error", err, res)
			}
			return
		}
		if res.Domain != "sports" || res.Service != "api" || res.InstanceID != "i-1" {
			t.Fatalf("accepted %q as %+v", s, res)
		}
	})
}

// FuzzDecodeClaims: the claims parser (reached only after a valid signature in Verify)
// never panics, and whatever it accepts passes Mint's checks.
func FuzzDecodeClaims(f *testing.F) {
	f.Add([]byte(`{"jti":"1","sub":"a.b","iat":1,"iss":"sys.auth.zts","aud":"sys.auth.zts","provider":"p","domain":"a","service":"b","instance_id":"i"}`))
	f.Add([]byte(`{"jti":"1","jti":"2"}`))
	f.Add([]byte(`{"iat":1e3}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeClaims(b)
		if err != nil {
			return
		}
		if err := c.check(); err != nil {
			t.Fatalf("accepted claims fail check: %v", err)
		}
		if !athenz.IsDomainName(c.Domain) || !athenz.IsSimpleName(c.Service) || c.IssuedAt <= 0 || c.ID == "" {
			t.Fatalf("accepted %+v", c)
		}
	})
}
