package sds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// PodUIDPlaceholder is replaced by a pod's UID in NodeIdentities.TokenPath.
const PodUIDPlaceholder = "{pod_uid}"

// DefaultKubeletTokenPath is where the kubelet keeps a pod's projected service-account
// token for a projected volume named "athenz-mesh-token" with path "athenz-mesh-token"
// (the convention of attestor/k8s.DefaultTokenFile), seen from a DaemonSet that mounts
// the host's /var/lib/kubelet/pods at the same path.
const DefaultKubeletTokenPath = "/var/lib/kubelet/pods/" + PodUIDPlaceholder + "/volumes/kubernetes.io~projected/athenz-mesh-token/athenz-mesh-token"

// NodeIdentities makes the manager follow, in node mode, the identities that pods on
// this node ask for, and says how it proves them: with the projected service-account
// token of one of the pods mapped to the identity, read from the kubelet's pod volume
// directory on the host. The issuer verifies that token exactly as it verifies a
// sidecar's (the k8s attestor), and the certificate's instance id is that pod's UID.
//
// Which pods map to which identity is learnt from the node authorizer: wrap
// NodeConfig.Map so that every mapped pod is passed to Record. A pod without the
// projected token volume cannot be proven, and its identity is not issued (logged and
// retried with backoff).
//
// With Istio set, the certificates come from the issuer's Istio CA API instead and carry
// the pods' Istio identities (see NodeIstio).
type NodeIdentities struct {
	// Demand says which identities connected workloads ask for (the *Cache). Required.
	Demand DemandSource
	// Template gives what every node identity shares: Provider (required), KeyType,
	// Validity, Namespace. Domain, Service, InstanceID and Collector are set per identity.
	Template IdentitySpec
	// TokenPath is the path of a pod's token, with PodUIDPlaceholder for its UID. Empty:
	// DefaultKubeletTokenPath, or DefaultIstioKubeletTokenPath with Istio.
	TokenPath string
	// Istio, when set, obtains the certificates from the issuer's Istio CA API. Nil: the
	// ZTS API (register, then refresh).
	Istio *NodeIstio

	mu    sync.Mutex
	pods  map[string][]string     // identity → pod UIDs, most recently seen last
	podSA map[string]istioBinding // pod UID → its service account, with Istio
	bound map[string]istioBinding // identity → the service account it is served for, with Istio
	// rebound, set by NewManager, withdraws an identity whose service account changed
	// (with Istio). Called with mu held, before Record returns.
	rebound func(identity string)
}

// maxPodsPerIdentity bounds the pods remembered per identity.
const maxPodsPerIdentity = 64

// Record notes that pod maps to identity. With Istio, it refuses a pod whose service
// account differs from the one the identity is already served for on this node; the
// caller must then not grant the identity. When the pods of that service account are all
// gone and the identity passes to another, the certificate naming the previous one is
// withdrawn before Record returns (so before the pod is granted the identity), and the
// identity is issued again for the new one. Safe for concurrent use.
func (n *NodeIdentities) Record(p Pod, identity string) error {
	if p.UID == "" || identity == "" {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pods == nil {
		n.pods = make(map[string][]string)
	}
	if n.Istio != nil {
		if err := n.bindIstio(p, identity); err != nil {
			return err
		}
	}
	uids := slices.DeleteFunc(n.pods[identity], func(u string) bool { return u == p.UID })
	uids = append(uids, p.UID)
	if len(uids) > maxPodsPerIdentity {
		for _, u := range uids[:len(uids)-maxPodsPerIdentity] {
			delete(n.podSA, u)
		}
		uids = uids[len(uids)-maxPodsPerIdentity:]
	}
	n.pods[identity] = uids
	return nil
}

// podsOf returns the pods recorded for identity, most recent first.
func (n *NodeIdentities) podsOf(identity string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	uids := slices.Clone(n.pods[identity])
	slices.Reverse(uids)
	return uids
}

// spec returns the IdentitySpec of a node identity.
func (n *NodeIdentities) spec(name string) (IdentitySpec, error) {
	d, s, ok := athenz.SplitPrincipal(name)
	if !ok {
		return IdentitySpec{}, fmt.Errorf("%q is not a principal", name)
	}
	spec := n.Template
	spec.Domain, spec.Service, spec.InstanceID = d, s, ""
	spec.InstanceFromK8sToken = true
	spec.Collector = &podTokenCollector{n: n, identity: name}
	spec.Provider = strings.ToLower(spec.Provider)
	spec.istio = n.Istio
	return spec, spec.validate()
}

// tokenPath is the path of a pod's projected token.
func (n *NodeIdentities) tokenPath(uid string) string {
	tmpl := n.TokenPath
	switch {
	case tmpl != "":
	case n.Istio != nil:
		tmpl = DefaultIstioKubeletTokenPath
	default:
		tmpl = DefaultKubeletTokenPath
	}
	return strings.ReplaceAll(tmpl, PodUIDPlaceholder, uid)
}

// podTokenCollector reads the projected token of a pod mapped to one identity.
type podTokenCollector struct {
	n        *NodeIdentities
	identity string
}

// Collect returns the token of the most recently seen pod of the identity whose token
// file is readable (pods that are gone have no files any more).
func (c *podTokenCollector) Collect(ctx context.Context, _ attestor.Target) (string, error) {
	uids := c.n.podsOf(c.identity)
	if len(uids) == 0 {
		return "", fmt.Errorf("no pod on this node is known to be %s", c.identity)
	}
	var errs []error
	for _, uid := range uids {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		path := c.n.tokenPath(uid)
		b, err := readSmallFile(path, 16<<10)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		errs = append(errs, fmt.Errorf("%s is empty", path))
	}
	volume := "athenz-mesh-token"
	if c.n.Istio != nil {
		volume = "istio-token"
	}
	return "", fmt.Errorf("no readable projected token for %s (does the pod mount the %s volume?): %w", c.identity, volume, errors.Join(errs...))
}

func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, limit+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(n) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b[:n], nil
}

// nodeRun is one running node identity.
type nodeRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	idle   time.Time // when it left the demand; zero while demanded
}

// followDemand starts keeping each identity workloads ask for and, NodeIdleGrace after
// the last one stopped asking, stops and withdraws it.
func (m *Manager) followDemand(ctx context.Context) {
	running := map[string]*nodeRun{}
	defer func() {
		for _, r := range running {
			r.cancel()
			<-r.done
		}
	}()
	for {
		now := m.clock.Now()
		want := map[string]bool{}
		for _, name := range m.node.Demand.Demand() {
			want[name] = true
			if r := running[name]; r != nil {
				r.idle = time.Time{}
			} else if m.state(name) == nil {
				m.startNode(ctx, name, running)
			}
		}
		var wake time.Time
		for name, r := range running {
			switch {
			case want[name]:
			case r.idle.IsZero():
				r.idle = now
				fallthrough
			default:
				if end := r.idle.Add(m.cfg.NodeIdleGrace); now.Before(end) {
					if wake.IsZero() || end.Before(wake) {
						wake = end
					}
					continue
				}
				m.stopNode(name, r)
				delete(running, name)
			}
		}
		var timer <-chan time.Time
		stop := func() {}
		if !wake.IsZero() {
			timer, stop = m.clock.After(max(wake.Sub(now), 0))
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-m.node.Demand.DemandChanged():
		case <-timer:
		}
		stop()
	}
}

func (m *Manager) startNode(ctx context.Context, name string, running map[string]*nodeRun) {
	spec, err := m.node.spec(name)
	if err != nil {
		m.log.Warn("node identity not served", "identity", name, "error", err)
		return
	}
	st := newIdentityState(spec)
	m.mu.Lock()
	m.states[name] = st
	m.mu.Unlock()
	m.refreshTrustDomains()
	cctx, cancel := context.WithCancel(ctx)
	r := &nodeRun{cancel: cancel, done: make(chan struct{})}
	running[name] = r
	go func() {
		defer close(r.done)
		m.keep(cctx, st)
	}()
	m.log.Info("node identity requested by a workload", "identity", name)
}

func (m *Manager) stopNode(name string, r *nodeRun) {
	r.cancel()
	<-r.done
	m.mu.Lock()
	delete(m.states, name)
	m.mu.Unlock()
	m.sink.RemoveIdentity(name)
	m.log.Info("node identity no longer requested; dropped", "identity", name)
}
