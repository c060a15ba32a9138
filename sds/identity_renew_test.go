package sds

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

func newStepClock(now time.Time) *stepClock {
	return &stepClock{now: now, waiters: map[chan time.Time]time.Time{}, armed: make(chan struct{}, 1024)}
}

// nextDeadline is the earliest deadline a goroutine waits for, if any.
func (c *stepClock) nextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, at := range c.waiters {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// testSignCSR signs a PEM CSR with ca: its URIs, CN cn (empty: the CSR's), valid from
// notBefore to notAfter.
func testSignCSR(ca *sdstest.CA, csrPEM []byte, cn string, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil {
		return nil, errors.New("no PEM CSR")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cmpOr(cn, csr.Subject.CommonName)}, URIs: csr.URIs,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// backdatingIssuer issues service and role certificates as the issuer's CA does: with
// NotBefore backdated, and a lifetime counted from that NotBefore. It counts issuances.
type backdatingIssuer struct {
	Issuer // AccessToken, RoleToken: never called
	ca     *sdstest.CA
	clock  Clock
	// backdate and life shape service certificates; roleBackdate and roleLife role ones.
	backdate, life, roleBackdate, roleLife time.Duration

	mu                sync.Mutex
	services, roleNum int
}

func (f *backdatingIssuer) counts() (services, roles int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.services, f.roleNum
}

func (f *backdatingIssuer) service(csr []byte) (*IssuedIdentity, error) {
	nb := f.clock.Now().Add(-f.backdate)
	cert, err := testSignCSR(f.ca, csr, "", nb, nb.Add(f.life))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.services++
	f.mu.Unlock()
	return &IssuedIdentity{CertificatePEM: certPEM(cert), SignerPEM: certPEM(f.ca.Cert)}, nil
}

func (f *backdatingIssuer) Register(_ context.Context, req *RegisterRequest) (*IssuedIdentity, error) {
	return f.service(req.CSR)
}

func (f *backdatingIssuer) Refresh(_ context.Context, _ *Credential, req *RefreshRequest) (*IssuedIdentity, error) {
	return f.service(req.CSR)
}

func (f *backdatingIssuer) RoleCertificate(_ context.Context, _ *Credential, req *RoleCertRequest) ([]byte, error) {
	nb := f.clock.Now().Add(-f.roleBackdate)
	cert, err := testSignCSR(f.ca, req.CSR, "", nb, nb.Add(f.roleLife))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.roleNum++
	f.mu.Unlock()
	return certPEM(cert), nil
}

// TestRenewalOfBackdatedCertificates checks that a certificate whose NotBefore is
// backdated so far that the usual renewal point (or its expiry) is already past on
// receipt is issued once, then renewed at a point measured from its receipt (or, when
// it arrived expired, RetryMin later), not re-issued in a loop. Jitter is 0: the point is
// half of the life left.
func TestRenewalOfBackdatedCertificates(t *testing.T) {
	const retryMin = 10 * time.Second
	for _, tc := range []struct {
		name                 string
		backdate, life       time.Duration // service certificates
		roles                bool
		roleBackdate, roleLi time.Duration
		wantNext             time.Duration // after the first issuance, from its receipt
		wantServices         int           // issuances by then, and again after wantNext
		wantRoles            int
	}{
		{name: "5-minute backdated 6-minute certificate", backdate: 5 * time.Minute, life: 6 * time.Minute,
			wantNext: 30 * time.Second, wantServices: 1},
		{name: "certificate expired on receipt: RetryMin apart", backdate: 5 * time.Minute, life: 5 * time.Minute,
			wantNext: retryMin, wantServices: 1},
		{name: "5-minute backdated 6-minute role certificate", backdate: 5 * time.Minute, life: time.Hour + 5*time.Minute,
			roles: true, roleBackdate: 5 * time.Minute, roleLi: 6 * time.Minute, wantNext: 30 * time.Second, wantServices: 1, wantRoles: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := sdstest.NewCA("root")
			if err != nil {
				t.Fatal(err)
			}
			clock := newStepClock(time.Now().Truncate(time.Second)) // certificates hold whole seconds
			iss := &backdatingIssuer{ca: ca, clock: clock, backdate: tc.backdate, life: tc.life, roleBackdate: tc.roleBackdate, roleLife: tc.roleLi}
			spec := IdentitySpec{Domain: "sports", Service: "api", Provider: "athenz-mesh.k8s", InstanceID: "i-1", Collector: stubCollector{}}
			if tc.roles {
				spec.Roles = []RoleSpec{{"weather", "readers"}}
			}
			m, err := NewManager(ManagerConfig{Identities: []IdentitySpec{spec}, RetryMin: retryMin}, ManagerDeps{
				Issuer: iss, Sink: NewCache(), Clock: clock, Rand: func() float64 { return 0 }, Logger: testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			received := clock.Now()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			defer func() {
				cancel()
				for {
					select {
					case <-done:
						return
					case <-clock.armed: // a looping manager may be blocked arming
					}
				}
			}()
			// waitAsleep waits until the manager sleeps until a deadline, failing if it
			// issues more than want meanwhile (a loop arms timers of zero and re-issues).
			waitAsleep := func(wantServices, wantRoles int) time.Time {
				t.Helper()
				for range 100 {
					select {
					case <-clock.armed:
					case <-time.After(30 * time.Second):
						t.Fatal("the manager never went back to sleep")
					}
					if s, r := iss.counts(); s > wantServices || r > wantRoles {
						t.Fatalf("%d service and %d role issuances, want %d and %d: renewing in a loop", s, r, wantServices, wantRoles)
					}
					if at, ok := clock.nextDeadline(); ok {
						return at
					}
				}
				t.Fatal("the manager keeps waking without waiting")
				return time.Time{}
			}
			at := waitAsleep(tc.wantServices, tc.wantRoles)
			if s, r := iss.counts(); s != tc.wantServices || r != tc.wantRoles {
				t.Fatalf("%d service and %d role issuances before sleeping, want %d and %d", s, r, tc.wantServices, tc.wantRoles)
			}
			if want := received.Add(tc.wantNext); !at.Equal(want) {
				t.Fatalf("next wake %s after receipt, want %s", at.Sub(received), tc.wantNext)
			}
			// At that point, exactly one more issuance of the certificate due.
			clock.advance(at.Sub(clock.Now()))
			wantS, wantR := tc.wantServices, tc.wantRoles
			if tc.roles {
				wantR++
			} else {
				wantS++
			}
			waitAsleep(wantS, wantR)
			if s, r := iss.counts(); s != wantS || r != wantR {
				t.Errorf("%d service and %d role issuances after the renewal point, want %d and %d", s, r, wantS, wantR)
			}
		})
	}
}
