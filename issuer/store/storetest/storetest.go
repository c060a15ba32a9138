// Package storetest is the conformance suite for store.Store: every backend (and any fake an
// issuer test writes) runs the same cases through Run and, where several processes can share
// one database, RunReplicas. It also provides PostgresDSN, which gives each test its own
// schema in the PostgreSQL named by ATHENZ_MESH_TEST_POSTGRES_DSN.
package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// NewStore returns a new, empty store whose clock is now, with the default retentions
// (store.DefaultCertificateRetention, store.DefaultRevocationRetention). It registers the
// store's Close (and any other cleanup) with t.
type NewStore func(t *testing.T, now func() time.Time) store.Store

// NewPair returns two handles on one new, empty database, as two issuer replicas would open
// it, both using the clock now. It registers their cleanup with t.
type NewPair func(t *testing.T, now func() time.Time) (a, b store.Store)

// Clock is a settable clock for stores under test. The zero value is not usable; see
// NewClock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time. It is safe for concurrent use.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// t0 is the suite's starting time: microsecond precision, like the stores, so that times
// come back equal.
var t0 = time.Date(2030, time.March, 4, 5, 6, 7, 890123000, time.UTC)

// testCase is one named conformance case on a fresh store.
type testCase struct {
	name string
	run  func(t *testing.T, s store.Store, clk *Clock)
}

// Run runs the conformance suite: every case gets a fresh store from newStore. Cases run in
// parallel with each other.
func Run(t *testing.T, newStore NewStore) {
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Certificates", certificateCases()},
		{"Revocation", revocationCases()},
		{"SingleUse", singleUseCases()},
		{"JoinTokens", joinTokenCases()},
		{"Prune", pruneCases()},
		{"Concurrency", concurrencyCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					clk := NewClock(t0)
					tc.run(t, newStore(t, clk.Now), clk)
				})
			}
		})
	}
}

// RunReplicas runs the race cases with the two racers on two handles of one database, as on
// two issuer replicas: exactly one wins each race there too.
func RunReplicas(t *testing.T, newPair NewPair) {
	for _, rc := range raceCases() {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock(t0)
			a, b := newPair(t, clk.Now)
			rc.run(t, a, b, clk)
		})
	}
}

// serialN returns a distinct, valid serial for n.
func serialN(n int) string { return fmt.Sprintf("5e%08x", n) }

// hashOf returns the SHA-256 of a join token secret.
func hashOf(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// serviceCert returns a valid service certificate record for instance id with serial.
func serviceCert(id, serial string) store.Certificate {
	return store.Certificate{
		Serial:     serial,
		Kind:       store.KindService,
		Provider:   "sys.auth.k8s",
		Domain:     "sports",
		Service:    "api",
		InstanceID: id,
		KeyType:    "ECDSA-P256",
		Hostname:   "api-0.sports.svc",
		ClientIP:   "10.1.2.3",
		NotBefore:  t0.Add(-time.Minute),
		NotAfter:   t0.Add(24 * time.Hour),
		IssuedAt:   t0,
	}
}

// refresh returns the certificate that refreshes prev with serial.
func refresh(prev store.Certificate, serial string) store.Certificate {
	c := prev
	c.Serial, c.PreviousSerial = serial, prev.Serial
	return c
}

// mustPut records c or fails the test.
func mustPut(t *testing.T, s store.Store, c store.Certificate) {
	t.Helper()
	if err := s.PutCertificate(t.Context(), c); err != nil {
		t.Fatalf("PutCertificate(%s): %v", c.Serial, err)
	}
}

// wantErr fails the test unless errors.Is(err, want) (want nil: err must be nil).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// sameCert fails the test unless got equals want in every field.
func sameCert(t *testing.T, got, want store.Certificate) {
	t.Helper()
	if !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) ||
		!got.IssuedAt.Equal(want.IssuedAt) || !got.RevokedAt.Equal(want.RevokedAt) {
		t.Fatalf("times differ:\n got  %+v\n want %+v", got, want)
	}
	got.NotBefore, got.NotAfter, got.IssuedAt, got.RevokedAt = want.NotBefore, want.NotAfter, want.IssuedAt, want.RevokedAt
	if got != want {
		t.Fatalf("record differs:\n got  %+v\n want %+v", got, want)
	}
}
