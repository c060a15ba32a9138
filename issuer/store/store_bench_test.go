package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// BenchmarkPutCertificate measures recording issued certificates, the store's share of
// issuance: "register" records a new instance's first certificate, "refresh" replaces an
// instance's current certificate (the check-and-swap path). "parallel" runs 8 callers per
// core, as concurrent issuance requests would. certs/s is the throughput.
func BenchmarkPutCertificate(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, mode := range []string{"register", "refresh"} {
				for _, parallel := range []bool{false, true} {
					name := mode
					if parallel {
						name += "/parallel"
					}
					b.Run(name, func(b *testing.B) { benchPut(b, open(b, be.config(b)), mode == "refresh", parallel) })
				}
			}
		})
	}
}

func benchPut(b *testing.B, s store.Store, refresh, parallel bool) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	var next atomic.Int64
	// put records one certificate for a caller whose instance and previous serial are in st.
	type state struct {
		instance string
		prev     string
	}
	put := func(st *state) error {
		n := next.Add(1)
		c := store.Certificate{
			Serial: fmt.Sprintf("7f%016x", n), Kind: store.KindService, Provider: "sys.auth.k8s",
			Domain: "sports", Service: "api", InstanceID: st.instance, KeyType: "ECDSA-P256",
			Hostname: "api.sports.svc", ClientIP: "10.0.0.1", NotBefore: now, NotAfter: now.Add(24 * time.Hour),
			IssuedAt: now,
		}
		if !refresh {
			c.InstanceID = fmt.Sprintf("pod-%d", n)
		} else {
			c.PreviousSerial = st.prev
		}
		if err := s.PutCertificate(b.Context(), c); err != nil {
			return err
		}
		st.prev = c.Serial
		return nil
	}
	newState := func() *state {
		st := &state{instance: fmt.Sprintf("pod-r%d", next.Add(1))}
		if refresh {
			if err := put(st); err != nil { // the registration to refresh from
				b.Fatal(err)
			}
		}
		return st
	}
	b.ReportAllocs()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			st := newState()
			for pb.Next() {
				if err := put(st); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		st := newState()
		b.ResetTimer()
		for b.Loop() {
			if err := put(st); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// BenchmarkCurrentCertificate measures the refresh check's read (8 callers per core).
func BenchmarkCurrentCertificate(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.config(b))
			now := time.Now().UTC()
			const instances = 1000
			for i := range instances {
				c := store.Certificate{
					Serial: fmt.Sprintf("6e%08x", i+1), Kind: store.KindService, Provider: "sys.auth.k8s",
					Domain: "sports", Service: "api", InstanceID: fmt.Sprintf("pod-%d", i),
					NotBefore: now, NotAfter: now.Add(time.Hour),
				}
				if err := s.PutCertificate(b.Context(), c); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("pod-%d", next.Add(1)%instances)
					if _, err := s.CurrentCertificate(b.Context(), "sys.auth.k8s", "sports", "api", id); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkUseOnce measures marking register tokens used (8 callers per core).
func BenchmarkUseOnce(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.config(b))
			exp := time.Now().Add(time.Hour)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.UseOnce(b.Context(), store.UseRegisterToken, fmt.Sprintf("jti-%d", next.Add(1)), exp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "uses/s")
		})
	}
}
