package sds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// KubeletPodsConfig configures KubeletPods.
type KubeletPodsConfig struct {
	// URL is the kubelet's pod list. Empty: https://127.0.0.1:10250/pods (the kubelet
	// of this node, seen from a hostNetwork DaemonSet).
	URL string
	// TokenFile is a bearer token read on every list (the agent's service-account
	// token; it needs "get" on nodes/proxy). Empty: none.
	TokenFile string
	// Client is the HTTP client, carrying the TLS trust for the kubelet's serving
	// certificate. Required.
	Client *http.Client
	// MinInterval bounds how often the pod list is fetched when an unknown pod UID is
	// asked for. Zero: 1 s.
	MinInterval time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// KubeletPods is a PodLookup over the kubelet's /pods list: one request gives every pod
// of the node, kept until a UID it does not know is asked for. Safe for concurrent use;
// concurrent misses share one fetch.
type KubeletPods struct {
	cfg KubeletPodsConfig

	mu      sync.Mutex // held during a fetch, so misses queue behind it
	byUID   map[string]Pod
	fetched time.Time
}

var _ PodLookup = (*KubeletPods)(nil)

// NewKubeletPods checks cfg and returns a KubeletPods.
func NewKubeletPods(cfg KubeletPodsConfig) (*KubeletPods, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubelet pods: an HTTP client is required")
	}
	if cfg.URL == "" {
		cfg.URL = "https://127.0.0.1:10250/pods"
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &KubeletPods{cfg: cfg, byUID: map[string]Pod{}}, nil
}

// PodByUID implements PodLookup.
func (k *KubeletPods) PodByUID(ctx context.Context, uid string) (Pod, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.byUID[uid]; ok {
		return p, nil
	}
	if since := k.cfg.Now().Sub(k.fetched); since < k.cfg.MinInterval {
		return Pod{}, fmt.Errorf("pod %s is not in the kubelet's pod list (fetched %s ago)", uid, since.Round(time.Millisecond))
	}
	pods, err := k.fetch(ctx)
	k.fetched = k.cfg.Now()
	if err != nil {
		return Pod{}, err
	}
	k.byUID = pods
	if p, ok := pods[uid]; ok {
		return p, nil
	}
	return Pod{}, fmt.Errorf("pod %s is not in the kubelet's pod list", uid)
}

// podList is the part of a v1.PodList the agent reads.
type podList struct {
	Items []struct {
		Metadata struct {
			UID         string            `json:"uid"`
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			ServiceAccountName string `json:"serviceAccountName"`
		} `json:"spec"`
	} `json:"items"`
}

func (k *KubeletPods) fetch(ctx context.Context) (map[string]Pod, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("kubelet pods: %w", err)
	}
	if k.cfg.TokenFile != "" {
		tok, err := os.ReadFile(k.cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet pods: bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet pods: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet pods: %s answered %s", k.cfg.URL, resp.Status)
	}
	var list podList
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("kubelet pods: decode: %w", err)
	}
	out := make(map[string]Pod, len(list.Items))
	for _, it := range list.Items {
		uid := strings.ToLower(it.Metadata.UID)
		out[uid] = Pod{
			UID: uid, Namespace: it.Metadata.Namespace, Name: it.Metadata.Name,
			ServiceAccount: it.Spec.ServiceAccountName, Labels: it.Metadata.Labels, Annotations: it.Metadata.Annotations,
		}
	}
	return out, nil
}
