package sds

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// benchLeaves issues n certificates for idAPI, so that rotations in a benchmark loop cost
// a cache update, not a key generation.
func benchLeaves(b *testing.B, e *testEnv, n int) []*Credential {
	b.Helper()
	out := make([]*Credential, n)
	for i := range out {
		l, err := e.ca.Issue(idAPI, spiffeOf(idAPI), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = &Credential{Chain: l.Chain, Key: l.Key}
	}
	return out
}

// BenchmarkFetchSecrets is FetchSecrets("default") over the real Unix socket, with
// 8×GOMAXPROCS concurrent callers on 4 connections. Client and server share the process,
// so the allocations and the time are both sides'; bench/sdsload runs the server apart.
func BenchmarkFetchSecrets(b *testing.B) {
	e := newEnv(b, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	conns := make([]*grpc.ClientConn, 4)
	for i := range conns {
		conns[i] = e.dial()
		if _, err := sdstest.Fetch(context.Background(), conns[i], NameDefault); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		conn := conns[int(next.Add(1))%len(conns)]
		for pb.Next() {
			if _, err := sdstest.Fetch(context.Background(), conn, NameDefault); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fetches/s")
}

// BenchmarkFetchSecretsHandler is the server's handler alone (authorize, resolve, build
// the response from the memo), without gRPC: what each FetchSecrets costs the agent
// beyond transport.
func BenchmarkFetchSecretsHandler(b *testing.B) {
	for _, tc := range []struct {
		name  string
		names []string
	}{
		{"default", []string{NameDefault}},
		{"default+ROOTCA+spiffe", []string{NameDefault, NameRootCA, spiffeOf(idAPI)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, envOptions{})
			e.setBundle()
			e.issue(idAPI)
			ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: PeerInfo{Cred: PeerCred{UID: uint32(os.Getuid()), PID: 1}}})
			req := &discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: tc.names}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r, err := e.srv.sds.FetchSecrets(ctx, req)
				if err != nil || len(r.GetResources()) != len(tc.names) {
					b.Fatalf("%v %v", r, err)
				}
			}
		})
	}
}

// BenchmarkRotationPush measures one rotation reaching every open stream: the cache is
// updated, every stream following the identity wakes, resolves (the Secret is built once
// and shared through the memo), sends, and each client receives and ACKs. ns/op is the
// time from SetIdentity to the last stream's receipt.
func BenchmarkRotationPush(b *testing.B) {
	for _, api := range []string{"sotw", "delta"} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/streams=%d", api, n), func(b *testing.B) {
				benchRotationPush(b, api, n)
			})
		}
	}
}

func benchRotationPush(b *testing.B, api string, n int) {
	e := newEnv(b, envOptions{})
	e.setBundle()
	creds := benchLeaves(b, e, 2)
	if err := e.cache.SetIdentity(idAPI, creds[0]); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := make([]*grpc.ClientConn, max(1, n/10))
	for i := range conns {
		conns[i] = e.dial()
	}
	got := make(chan error, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Each stream subscribes, receives its first response, then reports every response
	// after that and ACKs it, as Envoy does.
	for i := range n {
		conn := conns[i%len(conns)]
		var next func() error
		if api == "sotw" {
			c, err := sdstest.NewClient(ctx, conn)
			if err == nil {
				err = c.Subscribe(NameDefault)
			}
			if err != nil {
				b.Fatal(err)
			}
			next = func() error {
				r, err := c.Recv()
				if err == nil {
					err = c.Ack(r)
				}
				return err
			}
		} else {
			d, err := sdstest.NewDeltaClient(ctx, conn, nil)
			if err == nil {
				err = d.Subscribe(NameDefault)
			}
			if err != nil {
				b.Fatal(err)
			}
			next = func() error {
				r, err := d.Recv()
				if err == nil {
					err = d.Ack(r)
				}
				return err
			}
		}
		if err := next(); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := next()
				if ctx.Err() != nil {
					return
				}
				got <- err
				if err != nil {
					return
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := e.cache.SetIdentity(idAPI, creds[(i+1)%2]); err != nil {
			b.Fatal(err)
		}
		for range n {
			if err := <-got; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
}

// BenchmarkWatcherFanout is the cache's share of a rotation: SetIdentity signals 1,000
// watchers, each woken goroutine reads the new entry.
func BenchmarkWatcherFanout(b *testing.B) {
	const n = 1000
	ca, err := sdstest.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	var creds [2]*Credential
	for i := range creds {
		l, err := ca.Issue(idAPI, spiffeOf(idAPI), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		creds[i] = &Credential{Chain: l.Chain, Key: l.Key}
	}
	c := NewCache()
	if err := c.SetIdentity(idAPI, creds[0]); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	woke := make(chan uint64, n)
	var wg sync.WaitGroup
	for range n {
		w := c.Watch()
		w.Follow([]string{idAPI}, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			var seen uint64
			for {
				select {
				case <-done:
					return
				case <-w.C():
					// Signals coalesce: report only a version not seen before.
					if e, _ := c.Identity(idAPI); e.Version != seen {
						seen = e.Version
						woke <- seen
					}
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := c.SetIdentity(idAPI, creds[(i+1)%2]); err != nil {
			b.Fatal(err)
		}
		want := c.Version()
		for k := 0; k < n; {
			if <-woke == want {
				k++
			}
		}
	}
	b.StopTimer()
	close(done)
	wg.Wait()
}
