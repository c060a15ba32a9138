package sds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pod is what node mode needs to know about the pod a peer process runs in.
type Pod struct {
	// UID is the pod's metadata.uid, as found in the cgroup path.
	UID string
	// Namespace and Name identify the pod.
	Namespace, Name string
	// ServiceAccount is spec.serviceAccountName.
	ServiceAccount string
	// Labels and Annotations are the pod's, for mappings that read them (such as an
	// annotation naming the Athenz service).
	Labels, Annotations map[string]string
}

// PodLookup finds a pod running on this node by its UID. The real implementation is a
// client of the kubelet's pod list or of the API server (field selector on the node
// name), owned by the caller; it should cache, since it is called once per new process.
type PodLookup interface {
	// PodByUID returns the pod with metadata.uid uid. An error means the pod could not
	// be found (yet): the peer's streams retry with backoff.
	PodByUID(ctx context.Context, uid string) (Pod, error)
}

// NodeConfig configures a NodeAuthorizer.
type NodeConfig struct {
	// Pods finds pods by UID. Required.
	Pods PodLookup
	// Map returns the Athenz identity ("<domain>.<service>") of a pod: the naming rule
	// or annotation that says which Athenz service a namespace/service account is. ""
	// means the pod has none. Required.
	Map func(Pod) (string, error)
	// ProcRoot is where the host's /proc is mounted (a DaemonSet mounts it, with
	// hostPID, at /proc or /host/proc). Empty: "/proc".
	ProcRoot string
	// TTL bounds how long a pid's pod and identity are reused before the pod is looked up
	// again (its annotations, hence its identity, may change). A pid whose process start
	// time changed (pid reuse) or whose process is gone is dropped at once, whatever the
	// TTL. Zero: 30 s.
	TTL time.Duration
	// MaxEntries bounds the pid cache. Zero: 4096.
	MaxEntries int
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// NodeAuthorizer is the node-mode Authorizer (the agent as a Kubernetes DaemonSet): it
// finds the pod of a peer process from its cgroup and grants the pod's mapped Athenz
// identity. Results are cached per pid, keyed by the process start time so that a reused
// pid never inherits another process's identity.
//
// Security: the pid is the one the kernel reported at connect(2). A process that exits
// and whose pid is reused by another pod between the connect and the /proc reads would
// be misattributed; the start time is read before and after the cgroup to narrow that
// window, and the connection of an exited process is closed anyway, so the stream that
// asked dies with it.
type NodeAuthorizer struct {
	cfg NodeConfig

	mu   sync.Mutex
	pids map[int32]pidEntry
}

type pidEntry struct {
	start   uint64 // process start time, clock ticks since boot
	grant   Grant
	expires time.Time
}

// NewNodeAuthorizer checks cfg and returns a NodeAuthorizer.
func NewNodeAuthorizer(cfg NodeConfig) (*NodeAuthorizer, error) {
	if cfg.Pods == nil || cfg.Map == nil {
		return nil, errors.New("node authorizer: Pods and Map are required")
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &NodeAuthorizer{cfg: cfg, pids: make(map[int32]pidEntry)}, nil
}

// ErrNotInPod is returned by PodUIDFromCgroup for a process that is not in a Kubernetes
// pod's cgroup.
var ErrNotInPod = errors.New("not in a Kubernetes pod cgroup")

// Authorize grants the identity of the pod the peer process runs in.
func (a *NodeAuthorizer) Authorize(ctx context.Context, p PeerCred) (Grant, error) {
	if p.PID <= 0 {
		return Grant{Reason: "peer pid unknown (is the agent in the host pid namespace?)"}, nil
	}
	start, err := a.startTime(p.PID)
	if errors.Is(err, fs.ErrNotExist) {
		a.forget(p.PID)
		return Grant{Reason: fmt.Sprintf("process %d is gone", p.PID)}, nil
	}
	if err != nil {
		return Grant{}, err
	}
	now := a.cfg.Now()
	a.mu.Lock()
	e, ok := a.pids[p.PID]
	a.mu.Unlock()
	if ok && e.start == start && now.Before(e.expires) {
		return e.grant, nil
	}
	g, err := a.resolve(ctx, p.PID, start)
	if err != nil {
		a.forget(p.PID)
		return Grant{}, err
	}
	a.store(p.PID, pidEntry{start: start, grant: g, expires: now.Add(a.cfg.TTL)}, now)
	return g, nil
}

// resolve reads the pid's cgroup, finds its pod and maps it. Errors are "could not
// decide"; decisions come back as a Grant.
func (a *NodeAuthorizer) resolve(ctx context.Context, pid int32, start uint64) (Grant, error) {
	data, err := os.ReadFile(filepath.Join(a.cfg.ProcRoot, strconv.Itoa(int(pid)), "cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		return Grant{Reason: fmt.Sprintf("process %d is gone", pid)}, nil
	}
	if err != nil {
		return Grant{}, fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	if again, err := a.startTime(pid); err != nil || again != start {
		return Grant{Reason: fmt.Sprintf("process %d changed while it was being identified", pid)}, nil
	}
	uid, err := PodUIDFromCgroup(data)
	if errors.Is(err, ErrNotInPod) {
		return Grant{Reason: fmt.Sprintf("process %d is %v", pid, err)}, nil
	}
	if err != nil {
		return Grant{Reason: fmt.Sprintf("process %d: %v", pid, err)}, nil
	}
	pod, err := a.cfg.Pods.PodByUID(ctx, uid)
	if err != nil {
		return Grant{}, fmt.Errorf("look up pod %s of pid %d: %w", uid, pid, err)
	}
	id, err := a.cfg.Map(pod)
	switch {
	case err != nil:
		return Grant{Reason: fmt.Sprintf("pod %s/%s (service account %s): %v", pod.Namespace, pod.Name, pod.ServiceAccount, err)}, nil
	case id == "":
		return Grant{Reason: fmt.Sprintf("pod %s/%s (service account %s) maps to no Athenz identity", pod.Namespace, pod.Name, pod.ServiceAccount)}, nil
	}
	if err := validIdentityName(id); err != nil {
		return Grant{Reason: fmt.Sprintf("pod %s/%s: mapping: %v", pod.Namespace, pod.Name, err)}, nil
	}
	return Grant{Identities: []string{id}}, nil
}

func (a *NodeAuthorizer) forget(pid int32) {
	a.mu.Lock()
	delete(a.pids, pid)
	a.mu.Unlock()
}

func (a *NodeAuthorizer) store(pid int32, e pidEntry, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pids) >= a.cfg.MaxEntries {
		for k, v := range a.pids {
			if !now.Before(v.expires) {
				delete(a.pids, k)
			}
		}
		// Still full of live entries: drop arbitrary ones; they are only a cache.
		for k := range a.pids {
			if len(a.pids) < a.cfg.MaxEntries*3/4 {
				break
			}
			delete(a.pids, k)
		}
	}
	a.pids[pid] = e
}

// startTime reads field 22 of /proc/<pid>/stat, the process start time in clock ticks
// since boot: with the pid, it names a process uniquely.
func (a *NodeAuthorizer) startTime(pid int32) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(a.cfg.ProcRoot, strconv.Itoa(int(pid)), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStartTime(data)
}

// parseStartTime reads the start time from the contents of /proc/<pid>/stat. The command
// name (field 2) is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command", len(fields))
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc stat start time: %w", err)
	}
	return v, nil
}

// PodUIDFromCgroup finds the pod UID in the contents of /proc/<pid>/cgroup. It reads
// cgroup v1 ("<id>:<controllers>:<path>" per hierarchy) and v2 ("0::<path>") files and
// the path styles of the kubelet's two cgroup drivers:
//
//	cgroupfs: /kubepods/burstable/pod<uid>/<container>
//	systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/<runtime>-<container>.scope
//
// with containerd ("cri-containerd-"), CRI-O ("crio-") and Docker ("docker-") scopes,
// nested prefixes (kind, cgroup namespaces) and static pods (32 hex digit UIDs). The
// pod segment must come after a segment naming kubepods. Every line that names a pod must
// name the same one. It returns ErrNotInPod when no line names a pod.
func PodUIDFromCgroup(data []byte) (string, error) {
	found := ""
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return "", fmt.Errorf("malformed cgroup line %.128q", line)
		}
		uid := podUIDFromPath(parts[2])
		if uid == "" {
			continue
		}
		if found != "" && found != uid {
			return "", fmt.Errorf("cgroup names two pods, %s and %s", found, uid)
		}
		found = uid
	}
	if found == "" {
		return "", ErrNotInPod
	}
	return found, nil
}

// podUIDFromPath returns the pod UID named by one cgroup path, "" if none.
func podUIDFromPath(path string) string {
	underKubepods := false
	for seg := range strings.SplitSeq(path, "/") {
		if !underKubepods {
			underKubepods = strings.Contains(seg, "kubepods")
			if !underKubepods {
				continue
			}
		}
		seg = strings.TrimSuffix(seg, ".slice")
		var cand string
		switch {
		case strings.HasPrefix(seg, "pod"):
			cand = seg[len("pod"):]
		case strings.Contains(seg, "-pod"):
			cand = seg[strings.LastIndex(seg, "-pod")+len("-pod"):]
		default:
			continue
		}
		if uid, ok := normalizePodUID(cand); ok {
			return uid
		}
	}
	return ""
}

// normalizePodUID accepts a UUID written with '-' or '_' (the systemd driver escapes '-')
// or 32 hex digits (static pods), and returns it lower-case with '-'.
func normalizePodUID(s string) (string, bool) {
	s = strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	if len(s) == 32 {
		return s, isHex(s)
	}
	if len(s) != 36 {
		return "", false
	}
	for i := range len(s) {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return "", false
			}
		default:
			if !isHex(s[i : i+1]) {
				return "", false
			}
		}
	}
	return s, true
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}
