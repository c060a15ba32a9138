// Command authzload measures athenz-mesh authz under load against a no-op ext_authz
// server, both real binaries run as subprocesses on loopback, driven alternately (A B A B)
// with the same CheckRequests (as Envoy's HTTP ext_authz filter sends them, peer
// certificate included) by N concurrent gRPC clients. For each run it reports requests/s,
// latency percentiles and the server's CPU time per Check, read from /proc/<pid>/stat, so
// that the load generator's own CPU on a small machine does not blur the comparison.
//
// Each round has two phases per server: saturation (closed loop, every client sends as
// soon as its previous answer arrives) and half load (open loop at half of the no-op
// server's saturation rate, latency measured from the scheduled send time).
//
//	go run ./bench/authzload                       # 10k roles, 1M members, 2 rounds
//	go run ./bench/authzload -members 100000 -duration 5s -rounds 1
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/athenz-mesh/athenz-mesh/policy"
	"github.com/athenz-mesh/athenz-mesh/policy/policytest"
)

type options struct {
	domains, roles, members, principals, assertions int
	clients, conns, rounds, distinct                int
	duration, warmup                                time.Duration
	bin, noopBin, dir                               string
	seed                                            uint64
	certs, half                                     bool
	cacheSize                                       int
	serverEnv                                       string
}

func main() {
	var o options
	flag.IntVar(&o.domains, "domains", 10, "domains")
	flag.IntVar(&o.roles, "roles", 10_000, "roles in total")
	flag.IntVar(&o.members, "members", 1_000_000, "role members in total")
	flag.IntVar(&o.principals, "principals", 200_000, "distinct principals the members are drawn from")
	flag.IntVar(&o.assertions, "assertions", 10_000, "assertions in total")
	flag.IntVar(&o.clients, "clients", 16, "concurrent clients")
	flag.IntVar(&o.conns, "conns", 2, "gRPC connections the clients share (Envoy opens one per worker thread)")
	flag.IntVar(&o.rounds, "rounds", 2, "A B rounds")
	flag.IntVar(&o.distinct, "distinct", 1000, "distinct requests (caller, action, resource) cycled through")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each server's first phase in a round")
	flag.StringVar(&o.bin, "bin", "", "athenz-mesh binary (default: go build ./cmd/athenz-mesh)")
	flag.StringVar(&o.noopBin, "noop-bin", "", "no-op server binary (default: go build ./bench/authzload/noop)")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a temporary directory, removed afterwards)")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed")
	flag.BoolVar(&o.certs, "certs", true, "send a peer certificate with each request (include_peer_certificate)")
	flag.BoolVar(&o.half, "half", true, "run the half-load phase")
	flag.IntVar(&o.cacheSize, "cache-size", 0, "authz decision cache size (0: the default; -1: disabled)")
	flag.StringVar(&o.serverEnv, "server-env", "", "extra environment for both servers, comma-separated (such as GOGC=400)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "authzload:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.domains < 1 || o.roles < o.domains || o.clients < 1 || o.conns < 1 || o.distinct < 1 || o.principals < 1 {
		return errors.New("sizes must be positive, and roles at least domains")
	}
	if o.dir == "" {
		tmp, err := os.MkdirTemp("", "authzload")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		o.dir = tmp
	}
	if err := buildBinaries(&o); err != nil {
		return err
	}
	start := time.Now()
	compiled, err := writeBundle(o)
	if err != nil {
		return err
	}
	fmt.Printf("bundle: %d domains, %d roles, %d members, %d assertions; generated in %s\n",
		o.domains, o.roles, o.members, o.assertions, time.Since(start).Round(time.Millisecond))
	checks, allowShare := requests(o, compiled)
	reqs, err := encodeRequests(checks)
	if err != nil {
		return err
	}
	if objects, heap, err := policytest.EvaluatorHeap(filepath.Join(o.dir, "bundle.tar.gz")); err == nil {
		fmt.Printf("evaluator as authz holds it: live heap %.0f MiB in %d objects (each a cost to every GC cycle)\n", heap, objects)
	} else {
		return err
	}
	compiled = nil
	runtime.GC()
	fmt.Printf("requests: %d distinct, %.0f%% expected to be allowed, peer certificates %v\n", len(reqs), 100*allowShare, o.certs)

	noop, err := startServer(o, "noop", o.noopBin)
	if err != nil {
		return err
	}
	defer noop.stop()
	start = time.Now()
	authz, err := startServer(o, "authz", o.bin)
	if err != nil {
		return err
	}
	defer authz.stop()
	fmt.Printf("athenz-mesh authz ready in %s (bundle read, verified and indexed); RSS %s\n",
		time.Since(start).Round(time.Millisecond), rss(authz.cmd.Process.Pid))

	var results []result
	for round := 1; round <= o.rounds; round++ {
		var satNoop float64
		for _, s := range []*server{noop, authz} {
			if err := s.drive(reqs, o, o.warmup, 0); err != nil {
				return err
			}
			r, err := s.measure(reqs, o, 0)
			if err != nil {
				return err
			}
			r.round, r.phase = round, "saturation"
			results = append(results, r)
			r.print()
			if s == noop {
				satNoop = r.rps
			}
		}
		if o.half {
			for _, s := range []*server{noop, authz} {
				r, err := s.measure(reqs, o, satNoop/2)
				if err != nil {
					return err
				}
				r.round, r.phase = round, "half load"
				results = append(results, r)
				r.print()
			}
		}
	}
	summarize(results)
	fmt.Printf("authz RSS after the run: %s\n", rss(authz.cmd.Process.Pid))
	return nil
}

func buildBinaries(o *options) error {
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
		return nil
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.dir, "athenz-mesh")
		if err := build(o.bin, "./cmd/athenz-mesh"); err != nil {
			return err
		}
	}
	if o.noopBin == "" {
		o.noopBin = filepath.Join(o.dir, "noop")
		if err := build(o.noopBin, "./bench/authzload/noop"); err != nil {
			return err
		}
	}
	return nil
}

// writeBundle generates the world, compiles it and writes a signed bundle and its key.
func writeBundle(o options) (*policy.Compiled, error) {
	shape := policytest.Shape{
		Domains:             o.domains,
		RolesPerDomain:      o.roles / o.domains,
		MembersPerRole:      max(1, o.members/o.roles),
		GroupsPerDomain:     0,
		PoliciesPerDomain:   max(1, o.assertions/o.domains/10),
		AssertionsPerPolicy: min(10, max(1, o.assertions/o.domains)),
		Principals:          o.principals,
		Actions:             8,
		Entities:            200,
		Dense:               true,
	}
	domains := policytest.New(o.seed, shape).Domains()
	compiled, err := policy.Compile(domains, policy.CompileOptions{})
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.dir, "bundle.pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(o.dir, "bundle.tar.gz"))
	if err != nil {
		return nil, err
	}
	if err := policy.WriteBundle(f, compiled, policy.BundleOptions{SigningKey: key}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return compiled, nil
}

// requests draws the distinct CheckRequests: half aimed at an assertion of a role the
// caller holds (mostly allowed), half at random actions and resources (mostly denied).
func requests(o options, c *policy.Compiled) ([]*authv3.CheckRequest, float64) {
	rng := mrand.New(mrand.NewPCG(o.seed, 7))
	ev, err := policy.NewEvaluator(c)
	if err != nil {
		panic(err)
	}
	type target struct{ action, resource string }
	names := make([]string, 0, len(c.Domains))
	byRole := map[string]map[string][]target{}
	principals := map[string][]string{}
	for name, d := range c.Domains {
		names = append(names, name)
		byRole[name] = map[string][]target{}
		for action, ai := range d.Actions {
			for resource, as := range ai.Exact {
				for _, a := range as {
					byRole[name][a.Role] = append(byRole[name][a.Role], target{action, resource})
				}
			}
		}
		for p := range d.Members {
			principals[name] = append(principals[name], p)
			if len(principals[name]) >= 5000 {
				break
			}
		}
		slices.Sort(principals[name])
	}
	slices.Sort(names)
	certs := map[string]string{}
	out := make([]*authv3.CheckRequest, 0, o.distinct)
	allowed := 0
	for len(out) < o.distinct {
		domain := names[rng.IntN(len(names))]
		ps := principals[domain]
		if len(ps) == 0 {
			continue
		}
		principal := ps[rng.IntN(len(ps))]
		t := target{fmt.Sprintf("act%d", rng.IntN(8)), fmt.Sprintf("%s:res%d/item%d", domain, rng.IntN(200), rng.IntN(3))}
		if rng.IntN(2) == 0 {
			roles := sortedKeys(c.Domains[domain].Members[principal])
			if ts := byRole[domain][roles[rng.IntN(len(roles))]]; len(ts) > 0 {
				t = ts[rng.IntN(len(ts))]
			}
		}
		if ev.Decide(policy.Request{Principal: principal, Action: t.action, Resource: t.resource}).Allowed {
			allowed++
		}
		dom, svc, _ := strings.Cut(principal, ".")
		if i := strings.LastIndexByte(principal, '.'); i > 0 {
			dom, svc = principal[:i], principal[i+1:]
		}
		spiffe := "spiffe://" + dom + "/sa/" + svc
		if o.certs && certs[principal] == "" {
			certs[principal] = peerCert(principal, spiffe)
		}
		entity := strings.TrimPrefix(t.resource, domain+":")
		out = append(out, envoyCheck(spiffe, certs[principal], domain, t.action, entity))
	}
	return out, float64(allowed) / float64(len(out))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// peerCert makes a self-signed certificate for principal, URL-encoded as Envoy sends it.
func peerCert(principal, spiffe string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	u, _ := url.Parse(spiffe)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: principal},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}

// envoyCheck is a CheckRequest as Envoy's HTTP filter sends it for a GET with per-route
// context extensions naming the domain, action and resource.
func envoyCheck(principal, cert, domain, action, entity string) *authv3.CheckRequest {
	path := "/" + entity
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal, Certificate: cert},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "GET", Path: path, Host: domain + ".example.com", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":method": "GET", ":path": path, ":authority": domain + ".example.com", ":scheme": "https",
				"user-agent": "authzload", "accept": "*/*", "x-request-id": "0b4f1a8e-5d1c-4f7e-9f0a-1c2d3e4f5a6b",
				"x-forwarded-proto": "https",
			},
		}},
		ContextExtensions: map[string]string{"athenz.domain": domain, "athenz.action": action, "athenz.resource": entity},
	}}
}

// server is a running subprocess and connections to it.
type server struct {
	name  string
	cmd   *exec.Cmd
	conns []*grpc.ClientConn
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startServer(o options, name, bin string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if name == "noop" {
		cmd = exec.Command(bin, "-addr", addr)
	} else {
		cache := ""
		switch {
		case o.cacheSize < 0:
			cache = "  cache: {disabled: true}\n"
		case o.cacheSize > 0:
			cache = fmt.Sprintf("  cache: {size: %d}\n", o.cacheSize)
		}
		config := filepath.Join(o.dir, "authz.yaml")
		body := fmt.Sprintf("listen:\n  grpc: %s\n  metrics: \"off\"\nbundle:\n  file: %s\n  verification_keys: [{file: %s}]\ndecision:\n%slog:\n  level: warn\n",
			addr, filepath.Join(o.dir, "bundle.tar.gz"), filepath.Join(o.dir, "bundle.pub.pem"), cache)
		if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, "authz", "--config", config)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	if o.serverEnv != "" {
		cmd.Env = append(cmd.Env, strings.Split(o.serverEnv, ",")...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd}
	for range o.conns {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.conns = append(s.conns, conn)
	}
	// Wait until the server reports SERVING (authz: once the bundle is loaded).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	watch, err := healthpb.NewHealthClient(s.conns[0]).Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("%s health: %w", name, err)
	}
	for {
		resp, err := watch.Recv()
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("%s health: %w", name, err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
	}
}

func (s *server) stop() {
	for _, c := range s.conns {
		c.Close()
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_ = s.cmd.Wait()
	}
}

// result is one measured phase.
type result struct {
	server, phase string
	round         int
	n             int
	rps           float64
	p50, p99, max time.Duration
	p999          time.Duration
	cpuPerCheck   time.Duration
	clientCPU     time.Duration
	errors        int
	allowed       int // answers with status OK
}

func (r result) print() {
	fmt.Printf("round %d %-10s %-6s %9.0f req/s  p50 %7s  p99 %7s  p99.9 %7s  server CPU/check %6s  (%d checks, %.0f%% allowed, %d errors)\n",
		r.round, r.phase, r.server, r.rps, us(r.p50), us(r.p99), us(r.p999), us(r.cpuPerCheck), r.n, 100*float64(r.allowed)/float64(max(r.n, 1)), r.errors)
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/1e3) }

// drive sends load for d without measuring.
func (s *server) drive(reqs []encodedRequest, o options, d time.Duration, rate float64) error {
	_, _, _, err := s.load(reqs, o, d, rate)
	return err
}

// measure runs one phase: closed loop when rate is 0, else open loop at rate.
func (s *server) measure(reqs []encodedRequest, o options, rate float64) (result, error) {
	cpu0, err := procCPU(s.cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	var self0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	start := time.Now()
	lat, errs, allowed, err := s.load(reqs, o, o.duration, rate)
	if err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	cpu1, err := procCPU(s.cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	var self1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	slices.Sort(lat)
	r := result{server: s.name, n: len(lat), errors: errs, allowed: allowed, rps: float64(len(lat)) / wall.Seconds()}
	if len(lat) > 0 {
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		r.p50, r.p99, r.p999, r.max = pct(0.5), pct(0.99), pct(0.999), lat[len(lat)-1]
		r.cpuPerCheck = (cpu1 - cpu0) / time.Duration(len(lat))
	}
	r.clientCPU = rusageCPU(self1) - rusageCPU(self0)
	return r, nil
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// load sends requests from o.clients goroutines for d and returns the latencies.
func (s *server) load(reqs []encodedRequest, o options, d time.Duration, rate float64) ([]time.Duration, int, int, error) {
	var (
		mu      sync.Mutex
		all     []time.Duration
		errs    int
		allowed int
		wg      sync.WaitGroup
		first   error
		deadln  = time.Now().Add(d)
	)
	for c := range o.clients {
		wg.Go(func() {
			conn := s.conns[c%len(s.conns)]
			lat := make([]time.Duration, 0, 1<<16)
			nerr, nok := 0, 0
			var interval time.Duration
			next := time.Now()
			if rate > 0 {
				interval = time.Duration(float64(o.clients) / rate * float64(time.Second))
				next = next.Add(time.Duration(mrand.Int64N(int64(interval))))
			}
			for i := c * 7919; ; i++ {
				if rate > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
				}
				sent := time.Now()
				if sent.After(deadln) {
					break
				}
				if rate > 0 {
					sent = next // latency from the scheduled time: no coordinated omission
					next = next.Add(interval)
				}
				resp, err := check(context.Background(), conn, reqs[i%len(reqs)])
				if err != nil || !resp.hasStatus {
					nerr++
					if nerr > 100 {
						mu.Lock()
						if first == nil {
							first = fmt.Errorf("%s: %v", s.name, err)
						}
						mu.Unlock()
						break
					}
					continue
				}
				lat = append(lat, time.Since(sent))
				if resp.code == 0 {
					nok++
				}
			}
			mu.Lock()
			all = append(all, lat...)
			errs += nerr
			allowed += nok
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs, allowed, first
}

// procCPU is a process's user plus system CPU time from /proc/<pid>/stat (in clock
// ticks of 10 ms, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// rss is a process's resident set size from /proc/<pid>/status.
func rss(pid int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// summarize prints the medians over rounds and authz's ratios to the no-op server.
func summarize(results []result) {
	fmt.Println("\nsummary (median over rounds):")
	med := func(server, phase string, f func(result) float64) float64 {
		var v []float64
		for _, r := range results {
			if r.server == server && r.phase == phase {
				v = append(v, f(r))
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		if len(v)%2 == 0 {
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[len(v)/2]
	}
	for _, phase := range []string{"saturation", "half load"} {
		for _, srv := range []string{"noop", "authz"} {
			rps := med(srv, phase, func(r result) float64 { return r.rps })
			if rps == 0 {
				continue
			}
			fmt.Printf("  %-10s %-6s %9.0f req/s  p50 %7s  p99 %7s  p99.9 %7s  server CPU/check %6s\n", phase, srv, rps,
				us(time.Duration(med(srv, phase, func(r result) float64 { return float64(r.p50) }))),
				us(time.Duration(med(srv, phase, func(r result) float64 { return float64(r.p99) }))),
				us(time.Duration(med(srv, phase, func(r result) float64 { return float64(r.p999) }))),
				us(time.Duration(med(srv, phase, func(r result) float64 { return float64(r.cpuPerCheck) }))))
		}
	}
	cpuA := med("authz", "saturation", func(r result) float64 { return float64(r.cpuPerCheck) })
	cpuN := med("noop", "saturation", func(r result) float64 { return float64(r.cpuPerCheck) })
	rpsA := med("authz", "saturation", func(r result) float64 { return r.rps })
	rpsN := med("noop", "saturation", func(r result) float64 { return r.rps })
	if cpuN > 0 && rpsN > 0 {
		fmt.Printf("  authz/noop: server CPU per check %.2fx, throughput %.2fx\n", cpuA/cpuN, rpsA/rpsN)
	}
}
