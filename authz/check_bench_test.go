package authz

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCheck measures the pipeline in process (no gRPC): input to answer, with the
// cache (every request a hit after the first) and without it (every request decided).
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg, _, _ := fileServerConfig(b)
			cfg.Decision.Cache.Disabled = !bc.cache
			ts := startServer(b, cfg, Deps{})
			ts.waitReady(b)
			api := newPeer(b, "sports.api", "spiffe://sports/sa/api")
			in := inputFromCheckRequest(envoyReq{path: "/public/scores", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := ts.checker.check(ctx, in, "grpc"); !r.Allowed {
					b.Fatal(r.Reason)
				}
			}
		})
	}
}

// BenchmarkCheckGRPC measures Check over a real gRPC connection on loopback TCP.
func BenchmarkCheckGRPC(b *testing.B) {
	cfg, _, _ := fileServerConfig(b)
	ts := startServer(b, cfg, Deps{})
	ts.waitReady(b)
	api := newPeer(b, "sports.api", "spiffe://sports/sa/api")
	req := envoyReq{path: "/public/scores", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := ts.tcp.Check(context.Background(), req)
			if err != nil || resp.GetOkResponse() == nil {
				panic(fmt.Sprintf("%v %v", resp, err))
			}
		}
	})
}

// reportCPU reports the process's CPU time (user + system, client and server together)
// per operation, which other processes on a busy machine disturb less than wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// BenchmarkCheckGRPCLargeBundle is BenchmarkCheckGRPC on a bundle given in
// $AUTHZ_BENCH_BUNDLE (for example the one bench/authzload -dir DIR leaves in DIR), with
// requests from principals it holds; it is skipped without one.
func BenchmarkCheckGRPCLargeBundle(b *testing.B) {
	path := os.Getenv("AUTHZ_BENCH_BUNDLE")
	if path == "" {
		b.Skip("set AUTHZ_BENCH_BUNDLE to a bundle file")
	}
	ts := startServer(b, Config{Bundle: BundleConfig{File: path}}, Deps{})
	ts.waitReady(b)
	c := ts.Store().Current().Evaluator.Compiled()
	var reqs []*authv3.CheckRequest
	for name, d := range c.Domains {
		for p := range d.Members {
			i := strings.LastIndexByte(p, '.')
			peer := newPeer(b, p, "spiffe://"+p[:i]+"/sa/"+p[i+1:])
			reqs = append(reqs, envoyReq{path: "/res1/item1", peer: &peer,
				ext: map[string]string{"athenz.domain": name, "athenz.action": "act1"}}.build())
			if len(reqs)%20 == 0 {
				break
			}
		}
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ts.tcp.Check(context.Background(), reqs[int(n.Add(1))%len(reqs)]); err != nil {
				panic(err)
			}
		}
	})
}

// BenchmarkAnswer measures the server's own work per check: decoding the CheckRequest,
// the pipeline, and the CheckResponse's wire encoding (what gRPC does before and after).
func BenchmarkAnswer(b *testing.B) {
	cfg, _, _ := fileServerConfig(b)
	ts := startServer(b, cfg, Deps{})
	ts.waitReady(b)
	api := newPeer(b, "sports.api", "spiffe://sports/sa/api")
	req := envoyReq{path: "/public/scores", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()
	data, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	svc := &grpcService{c: ts.checker}
	codec := newWireCodec()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		in := &wireRequest{}
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, in); err != nil {
			b.Fatal(err)
		}
		resp, _ := svc.checkWire(ctx, in)
		out, err := codec.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// noopAuthz answers every check with OK: the baseline for BenchmarkCheckGRPC.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

// BenchmarkNoopGRPC is BenchmarkCheckGRPC against a server that does nothing, so the
// difference between the two is the server's own work per check.
func BenchmarkNoopGRPC(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, noopAuthz{})
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	api := newPeer(b, "sports.api", "spiffe://sports/sa/api")
	req := envoyReq{path: "/public/scores", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Check(context.Background(), req); err != nil {
				panic(err)
			}
		}
	})
}
