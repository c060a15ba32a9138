package sds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPodUIDFromCgroup(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string // "" with wantErr
		err  error  // nil: any error when want is ""
	}{
		{"v1-cgroupfs-docker.txt", "2c48913c-b29f-11e7-9350-020968147796", nil},
		{"v1-systemd-docker.txt", "6f6e4cd4-9d3b-4a4b-8d2f-4e2e0a1b9c7d", nil},
		{"v2-systemd-containerd.txt", "8a0c0b7e-55a1-4b7b-9c1e-2f7d3c4b5a69", nil},
		{"v2-systemd-crio.txt", "0d2b6c1e-8f3a-4e5d-9b7c-1a2b3c4d5e6f", nil},
		{"v2-cgroupfs-containerd.txt", "1b7ad5f5-7e9c-4f0e-8a4b-2c3d4e5f6a7b", nil},
		{"v2-guaranteed-cgroupfs.txt", "4e1c7a2b-3d5f-4a6b-8c9d-0e1f2a3b4c5d", nil},
		{"v2-kind-nested.txt", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", nil},
		{"v2-static-pod.txt", "6d2ba5d3e1fb83ba8dd6b4ea4a6d6f5b", nil},
		{"host-process.txt", "", ErrNotInPod},
		{"host-v1.txt", "", ErrNotInPod},
		{"cgroupns-root.txt", "", ErrNotInPod},
		{"pod-outside-kubepods.txt", "", ErrNotInPod},
		{"two-pods.txt", "", nil},
		{"malformed.txt", "", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "cgroup", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := PodUIDFromCgroup(data)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
}

func FuzzPodUIDFromCgroup(f *testing.F) {
	entries, _ := os.ReadDir(filepath.Join("testdata", "cgroup"))
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("testdata", "cgroup", e.Name())); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		uid, err := PodUIDFromCgroup(data)
		if err == nil {
			if _, ok := normalizePodUID(uid); !ok {
				t.Fatalf("returned malformed uid %q", uid)
			}
		}
	})
}

func TestParseStartTime(t *testing.T) {
	stat := func(comm string, start int) string {
		f := make([]string, 50)
		for i := range f {
			f[i] = "0"
		}
		f[0] = "S"
		f[19] = strconv.Itoa(start)
		return "4242 (" + comm + ") " + strings.Join(f, " ") + "\n"
	}
	for _, tc := range []struct {
		name, in string
		want     uint64
		ok       bool
	}{
		{"plain", stat("envoy", 123456), 123456, true},
		{"spaces and parens in comm", stat("evil) S 1 2 (x", 98765), 98765, true},
		{"truncated", "4242 (envoy) S 1 2 3", 0, false},
		{"no comm", "garbage", 0, false},
		{"not a number", strings.Replace(stat("envoy", 1), " 1 ", " x ", 1), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %d, %v", got, err)
			}
		})
	}
}

// fakeProc is a /proc tree in a temporary directory.
type fakeProc struct {
	t    *testing.T
	root string
}

func (p fakeProc) set(pid int, start int, cgroupFile string) {
	p.t.Helper()
	dir := filepath.Join(p.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	cg, err := os.ReadFile(filepath.Join("testdata", "cgroup", cgroupFile))
	if err != nil {
		p.t.Fatal(err)
	}
	fields := make([]string, 44)
	for i := range fields {
		fields[i] = "0"
	}
	fields[0] = "S"
	fields[19] = strconv.Itoa(start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(fmt.Sprintf("%d (envoy) %s\n", pid, strings.Join(fields, " "))), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), cg, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p fakeProc) kill(pid int) {
	if err := os.RemoveAll(filepath.Join(p.root, strconv.Itoa(pid))); err != nil {
		p.t.Fatal(err)
	}
}

// fakePods is a PodLookup over a fixed set of pods, counting lookups.
type fakePods struct {
	mu      sync.Mutex
	pods    map[string]Pod
	lookups int
	err     error
}

func (f *fakePods) PodByUID(_ context.Context, uid string) (Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return Pod{}, f.err
	}
	p, ok := f.pods[uid]
	if !ok {
		return Pod{}, fmt.Errorf("pod %s not on this node", uid)
	}
	return p, nil
}

func (f *fakePods) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// mapByServiceAccount is the kind of mapping a caller provides: namespace "sports",
// service account "api" → sports.api.
func mapByServiceAccount(p Pod) (string, error) {
	if p.ServiceAccount == "default" {
		return "", nil
	}
	if p.Annotations["athenz.io/bad"] != "" {
		return "", errors.New("annotation athenz.io/bad set")
	}
	return p.Namespace + "." + p.ServiceAccount, nil
}

func TestNodeAuthorizer(t *testing.T) {
	proc := fakeProc{t: t, root: t.TempDir()}
	pods := &fakePods{pods: map[string]Pod{
		"8a0c0b7e-55a1-4b7b-9c1e-2f7d3c4b5a69": {UID: "8a0c0b7e-55a1-4b7b-9c1e-2f7d3c4b5a69", Namespace: "sports", Name: "api-1", ServiceAccount: "api"},
		"0d2b6c1e-8f3a-4e5d-9b7c-1a2b3c4d5e6f": {UID: "0d2b6c1e-8f3a-4e5d-9b7c-1a2b3c4d5e6f", Namespace: "sports", Name: "web-1", ServiceAccount: "web"},
		"1b7ad5f5-7e9c-4f0e-8a4b-2c3d4e5f6a7b": {UID: "1b7ad5f5-7e9c-4f0e-8a4b-2c3d4e5f6a7b", Namespace: "misc", Name: "x", ServiceAccount: "default"},
	}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := NewNodeAuthorizer(NodeConfig{Pods: pods, Map: mapByServiceAccount, ProcRoot: proc.root, TTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	authorize := func(pid int32) Grant {
		t.Helper()
		g, err := a.Authorize(ctx, PeerCred{UID: 1337, PID: pid})
		if err != nil {
			t.Fatalf("pid %d: %v", pid, err)
		}
		return g
	}

	proc.set(100, 5000, "v2-systemd-containerd.txt")
	if g := authorize(100); len(g.Identities) != 1 || g.Identities[0] != "sports.api" {
		t.Fatalf("grant %+v", g)
	}
	authorize(100)
	if pods.count() != 1 {
		t.Fatalf("pod looked up %d times, want the cached answer", pods.count())
	}

	// The pid is reused by a process of another pod: the start time differs.
	proc.set(100, 6000, "v2-systemd-crio.txt")
	if g := authorize(100); len(g.Identities) != 1 || g.Identities[0] != "sports.web" {
		t.Fatalf("after pid reuse: grant %+v", g)
	}
	if pods.count() != 2 {
		t.Fatalf("lookups %d", pods.count())
	}

	// TTL expiry looks the pod up again.
	now = now.Add(2 * time.Minute)
	authorize(100)
	if pods.count() != 3 {
		t.Fatalf("lookups %d after TTL", pods.count())
	}

	// Process gone: no identity, and the entry is dropped.
	proc.kill(100)
	if g := authorize(100); len(g.Identities) != 0 || !strings.Contains(g.Reason, "gone") {
		t.Fatalf("gone process: %+v", g)
	}
	a.mu.Lock()
	_, cached := a.pids[100]
	a.mu.Unlock()
	if cached {
		t.Fatal("entry of a gone process kept")
	}

	for _, tc := range []struct {
		name   string
		cgroup string
		reason string
	}{
		{"host process", "host-process.txt", "not in a Kubernetes pod"},
		{"pod without identity", "v2-cgroupfs-containerd.txt", "maps to no Athenz identity"},
		{"conflicting cgroup", "two-pods.txt", "two pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc.set(200, 1, tc.cgroup)
			defer proc.kill(200)
			defer a.forget(200)
			if g := authorize(200); len(g.Identities) != 0 || !strings.Contains(g.Reason, tc.reason) {
				t.Fatalf("grant %+v, want reason %q", g, tc.reason)
			}
		})
	}

	t.Run("lookup failure is undecided", func(t *testing.T) {
		proc.set(300, 1, "v2-systemd-containerd.txt")
		pods.mu.Lock()
		pods.err = errors.New("kubelet unreachable")
		pods.mu.Unlock()
		if _, err := a.Authorize(ctx, PeerCred{PID: 300}); err == nil {
			t.Fatal("lookup failure gave a decision")
		}
		pods.mu.Lock()
		pods.err = nil
		pods.mu.Unlock()
		if g := authorize(300); len(g.Identities) != 1 {
			t.Fatalf("after recovery: %+v", g)
		}
	})

	t.Run("unknown pid", func(t *testing.T) {
		if g := authorize(0); len(g.Identities) != 0 {
			t.Fatalf("%+v", g)
		}
	})
}

func TestNodeAuthorizerBounded(t *testing.T) {
	proc := fakeProc{t: t, root: t.TempDir()}
	pods := &fakePods{pods: map[string]Pod{
		"8a0c0b7e-55a1-4b7b-9c1e-2f7d3c4b5a69": {Namespace: "sports", ServiceAccount: "api"},
	}}
	a, err := NewNodeAuthorizer(NodeConfig{Pods: pods, Map: mapByServiceAccount, ProcRoot: proc.root, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	for pid := 1; pid <= 30; pid++ {
		proc.set(pid, pid, "v2-systemd-containerd.txt")
		if _, err := a.Authorize(context.Background(), PeerCred{PID: int32(pid)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.pids); n > 8 {
		t.Fatalf("%d cached pids, limit 8", n)
	}
}
