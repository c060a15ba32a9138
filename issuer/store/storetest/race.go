package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// rounds is how many races each race case runs.
const rounds = 50

// raceCase is a race between two racers, one on each of two store handles (the same handle
// in Run, two handles on one database in RunReplicas).
type raceCase struct {
	name string
	run  func(t *testing.T, a, b store.Store, clk *Clock)
}

// concurrencyCases are the race cases on one handle, plus many concurrent writers.
func concurrencyCases() []testCase {
	var cases []testCase
	for _, rc := range raceCases() {
		cases = append(cases, testCase{rc.name, func(t *testing.T, s store.Store, clk *Clock) { rc.run(t, s, s, clk) }})
	}
	return append(cases, testCase{"many concurrent registrations and refreshes all land", concurrentPuts})
}

// race runs a and b at the same time (released together from a barrier) and returns their
// errors.
func race(a, b func() error) (errA, errB error) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); <-start; errA = a() }()
	go func() { defer wg.Done(); <-start; errB = b() }()
	close(start)
	wg.Wait()
	return errA, errB
}

// oneWins fails the test unless exactly one of errA, errB is nil and the other is loser.
func oneWins(t *testing.T, round int, errA, errB, loser error) {
	t.Helper()
	switch {
	case errA == nil && errB == nil:
		t.Fatalf("round %d: both racers won", round)
	case errA != nil && errB != nil:
		t.Fatalf("round %d: both racers lost: %v; %v", round, errA, errB)
	case errA != nil && !errors.Is(errA, loser):
		t.Fatalf("round %d: loser's error %v, want %v", round, errA, loser)
	case errB != nil && !errors.Is(errB, loser):
		t.Fatalf("round %d: loser's error %v, want %v", round, errB, loser)
	}
}

func raceCases() []raceCase {
	return []raceCase{
		{"racing UseOnce of one id: exactly one wins", func(t *testing.T, a, b store.Store, _ *Clock) {
			exp := t0.Add(time.Hour)
			for i := range rounds {
				id := fmt.Sprintf("jti-%d", i)
				errA, errB := race(
					func() error { return a.UseOnce(t.Context(), store.UseRegisterToken, id, exp) },
					func() error { return b.UseOnce(t.Context(), store.UseRegisterToken, id, exp) })
				oneWins(t, i, errA, errB, store.ErrAlreadyUsed)
			}
		}},
		{"racing BurnJoinToken of one token: exactly one wins", func(t *testing.T, a, b store.Store, _ *Clock) {
			for i := range rounds {
				secret := fmt.Sprintf("secret-%d", i)
				tok := store.JoinToken{IDHash: hashOf(secret), Domain: "sports", Service: "api", ExpiresAt: t0.Add(time.Hour)}
				wantErr(t, "CreateJoinToken", a.CreateJoinToken(t.Context(), tok), nil)
				burn := func(s store.Store) func() error {
					return func() error { _, err := s.BurnJoinToken(t.Context(), hashOf(secret)); return err }
				}
				errA, errB := race(burn(a), burn(b))
				oneWins(t, i, errA, errB, store.ErrAlreadyUsed)
			}
		}},
		{"racing refreshes from one certificate: exactly one wins", func(t *testing.T, a, b store.Store, _ *Clock) {
			cur := serviceCert("pod-1", serialN(0))
			mustPut(t, a, cur)
			for i := range rounds {
				ca, cb := refresh(cur, serialN(2*i+1)), refresh(cur, serialN(2*i+2))
				errA, errB := race(
					func() error { return a.PutCertificate(t.Context(), ca) },
					func() error { return b.PutCertificate(t.Context(), cb) })
				oneWins(t, i, errA, errB, store.ErrSerialMismatch)
				winner := ca
				if errA != nil {
					winner = cb
				}
				got, err := b.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
				wantErr(t, "CurrentCertificate", err, nil)
				if got.Serial != winner.Serial {
					t.Fatalf("round %d: current %s, want the winner %s", i, got.Serial, winner.Serial)
				}
				cur = winner
			}
		}},
		{"revoke racing refresh: no unrevoked certificate survives", func(t *testing.T, a, b store.Store, _ *Clock) {
			for i := range rounds {
				id := fmt.Sprintf("pod-%d", i)
				c := serviceCert(id, serialN(2*i+1))
				mustPut(t, a, c)
				next := refresh(c, serialN(2*i+2))
				errPut, errRevoke := race(
					func() error { return a.PutCertificate(t.Context(), next) },
					func() error { return b.Revoke(t.Context(), "sys.auth.k8s", "sports", "api", id, "race", t0) })
				wantErr(t, "Revoke", errRevoke, nil)
				if errPut != nil && !errors.Is(errPut, store.ErrRevoked) {
					t.Fatalf("round %d: refresh failed with %v, want success or ErrRevoked", i, errPut)
				}
				for _, serial := range []string{c.Serial, next.Serial} {
					revoked, err := b.IsRevoked(t.Context(), serial)
					wantErr(t, "IsRevoked", err, nil)
					_, errGet := b.CertificateBySerial(t.Context(), serial)
					if errGet == nil && !revoked {
						t.Fatalf("round %d: certificate %s of a revoked instance is not revoked (refresh error %v)", i, serial, errPut)
					}
				}
			}
		}},
	}
}

// concurrentPuts registers and refreshes many instances from many goroutines at once.
func concurrentPuts(t *testing.T, s store.Store, _ *Clock) {
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				n := w*perWorker + i
				c := serviceCert(fmt.Sprintf("pod-%d", n), serialN(3*n+1))
				if err := s.PutCertificate(t.Context(), c); err != nil {
					errs <- err
					return
				}
				if err := s.PutCertificate(t.Context(), refresh(c, serialN(3*n+2))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent put: %v", err)
	}
	for n := range workers * perWorker {
		got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", fmt.Sprintf("pod-%d", n))
		wantErr(t, "CurrentCertificate", err, nil)
		if got.Serial != serialN(3*n+2) {
			t.Fatalf("pod-%d: current %s, want %s", n, got.Serial, serialN(3*n+2))
		}
	}
}
