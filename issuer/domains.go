package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// snapshot is one loaded, compiled and indexed state of the domain files. It is
// immutable once published, apart from the lazily filled signed-policy cache, which has
// its own lock.
type snapshot struct {
	domains  map[string]*policy.Domain
	modified map[string]athenz.Timestamp // the ETag of each domain's signed policy data
	eval     *policy.Evaluator
	keys     map[string]map[string]crypto.PublicKey // principal → key id → key
	services map[string]*policy.Service             // principal → service
	revision string
	bundle   []byte // the OPA bundle, nil when disabled or not built
	loadedAt time.Time

	signedMu sync.Mutex
	signed   map[string]*signedEntry
}

// hasDomain reports whether domain is loaded.
func (s *snapshot) hasDomain(domain string) bool {
	_, ok := s.domains[domain]
	return ok
}

// expiryCap converts an Athenz expiry limit in minutes to a lifetime cap; 0 (or less)
// is no cap.
func expiryCap(mins int32) time.Duration {
	if mins <= 0 {
		return 0
	}
	return time.Duration(mins) * time.Minute
}

// capLifetime lowers d to limit when limit is set (positive); it never raises d.
func capLifetime(d, limit time.Duration) time.Duration {
	if limit > 0 && limit < d {
		return limit
	}
	return d
}

// role returns the role of domain with the short name role, nil when there is none.
func (s *snapshot) role(domain, role string) *policy.Role {
	d := s.domains[domain]
	if d == nil {
		return nil
	}
	full := athenz.JoinRoleName(domain, role)
	for _, r := range d.Roles {
		if strings.EqualFold(r.Name, full) {
			return r
		}
	}
	return nil
}

// serviceCertCap is the domain's serviceCertExpiryMins as a cap (0: none).
func (s *snapshot) serviceCertCap(domain string) time.Duration {
	if d := s.domains[domain]; d != nil {
		return expiryCap(d.ServiceCertExpiryMins)
	}
	return 0
}

// roleCertCap is the role's certExpiryMins, else the domain's roleCertExpiryMins, as a
// cap (0: none).
func (s *snapshot) roleCertCap(domain, role string) time.Duration {
	if r := s.role(domain, role); r != nil && r.CertExpiryMins > 0 {
		return expiryCap(r.CertExpiryMins)
	}
	if d := s.domains[domain]; d != nil {
		return expiryCap(d.RoleCertExpiryMins)
	}
	return 0
}

// tokenCap is the smallest tokenExpiryMins among roles (short names), else the domain's
// tokenExpiryMins, as a cap (0: none).
func (s *snapshot) tokenCap(domain string, roles []string) time.Duration {
	var out time.Duration
	for _, name := range roles {
		if r := s.role(domain, name); r != nil {
			out = capValidity(out, expiryCap(r.TokenExpiryMins))
		}
	}
	if out > 0 {
		return out
	}
	if d := s.domains[domain]; d != nil {
		return expiryCap(d.TokenExpiryMins)
	}
	return 0
}

// ServicePublicKey implements ntoken.ServiceKeys from the domain data.
func (s *snapshot) ServicePublicKey(domain, service, keyID string) (crypto.PublicKey, bool) {
	k, ok := s.keys[athenz.Principal(domain, service)][keyID]
	return k, ok
}

// allowed asks the evaluator whether principal may perform action on resource.
func (s *snapshot) allowed(principal, action, resource string, at time.Time) bool {
	return s.eval.Decide(policy.Request{Principal: principal, Action: action, Resource: resource, Time: at}).Allowed
}

// domainSource loads the domains directory, reloads it when it changes, and publishes
// each new snapshot atomically. Waiters (bundle long polls) are woken on every change.
type domainSource struct {
	dir       string
	log       *slog.Logger
	now       func() time.Time
	buildFunc func(*snapshot) error // extra work per snapshot (bundle); may be nil

	cur         atomic.Pointer[snapshot]
	fingerprint string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a new snapshot is published

	reloads atomic.Int64 // failed reloads, for tests and readiness
	lastErr atomic.Pointer[string]
}

func newDomainSource(dir string, log *slog.Logger, now func() time.Time, build func(*snapshot) error) *domainSource {
	return &domainSource{dir: dir, log: log, now: now, buildFunc: build, changed: make(chan struct{})}
}

// current returns the snapshot in force, nil before the first successful load.
func (d *domainSource) current() *snapshot { return d.cur.Load() }

// changedCh returns a channel closed at the next snapshot change.
func (d *domainSource) changedCh() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// load reads the directory when its fingerprint changed since the last successful load
// (or force is set) and publishes the result. It reports whether a new snapshot was
// published; on error the previous one stays in force.
func (d *domainSource) load(force bool) (bool, error) {
	fp, err := dirFingerprint(d.dir)
	if err != nil {
		return false, err
	}
	if !force && fp == d.fingerprint && d.cur.Load() != nil {
		return false, nil
	}
	domains, err := policy.LoadDir(d.dir)
	if err != nil {
		return false, err
	}
	snap, err := buildSnapshot(domains, d.now())
	if err != nil {
		return false, err
	}
	if d.buildFunc != nil {
		if err := d.buildFunc(snap); err != nil {
			return false, err
		}
	}
	d.fingerprint = fp
	d.cur.Store(snap)
	d.mu.Lock()
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	return true, nil
}

// run polls the directory every interval until ctx is done.
func (d *domainSource) run(ctx context.Context, interval time.Duration, onReload func(ok bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := d.load(false)
		switch {
		case err != nil:
			msg := err.Error()
			if prev := d.lastErr.Load(); prev == nil || *prev != msg {
				d.log.Error("domain reload failed; keeping the last good domain data", "dir", d.dir, "error", err)
			}
			d.lastErr.Store(&msg)
			d.reloads.Add(1)
			onReload(false)
		case changed:
			d.lastErr.Store(nil)
			s := d.current()
			d.log.Info("domains reloaded", "dir", d.dir, "domains", len(s.domains), "revision", s.revision)
			onReload(true)
		}
	}
}

// dirFingerprint hashes the names, sizes and modification times of the directory's
// entries: any edit, rename, addition or removal changes it.
func dirFingerprint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("domains directory: %w", err)
	}
	h := sha256.New()
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildSnapshot compiles and indexes domains.
func buildSnapshot(domains []*policy.Domain, now time.Time) (*snapshot, error) {
	compiled, err := policy.Compile(domains, policy.CompileOptions{})
	if err != nil {
		return nil, err
	}
	eval, err := policy.NewEvaluator(compiled)
	if err != nil {
		return nil, err
	}
	s := &snapshot{
		domains:  make(map[string]*policy.Domain, len(domains)),
		modified: make(map[string]athenz.Timestamp, len(domains)),
		eval:     eval,
		keys:     make(map[string]map[string]crypto.PublicKey),
		services: make(map[string]*policy.Service),
		revision: compiled.Revision,
		loadedAt: now,
		signed:   make(map[string]*signedEntry),
	}
	for _, d := range domains {
		name := strings.ToLower(d.Name)
		s.domains[name] = d
		s.modified[name] = domainModified(d, now)
		for _, svc := range d.Services {
			principal := strings.ToLower(svc.Name)
			s.services[principal] = svc
			ks := make(map[string]crypto.PublicKey, len(svc.PublicKeys))
			for _, k := range svc.PublicKeys {
				pub, err := athenz.DecodePublicKeyEntry(k.Key)
				if err != nil {
					return nil, fmt.Errorf("service %s key %q: %w", principal, k.ID, err)
				}
				ks[k.ID] = pub
			}
			s.keys[principal] = ks
		}
	}
	return s, nil
}

// domainModified is the domain's modification time: its "modified" field, else the
// modification time of its file, else now. It is the signed policy data's modified
// and ETag, so it must change whenever the policies do.
func domainModified(d *policy.Domain, now time.Time) athenz.Timestamp {
	if !d.Modified.IsZero() {
		return d.Modified
	}
	if d.Source != "" {
		if info, err := os.Stat(d.Source); err == nil {
			return athenz.NewTimestamp(info.ModTime())
		}
	}
	return athenz.NewTimestamp(now)
}

// sortedDomainNames lists the loaded domains in order.
func (s *snapshot) sortedDomainNames() []string {
	names := make([]string, 0, len(s.domains))
	for n := range s.domains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// buildBundle compiles the snapshot's domains into the signed OPA bundle.
func buildBundle(s *snapshot, key *signingKey, scope string) error {
	var buf bytes.Buffer
	opts := policy.BundleOptions{Scope: scope}
	if key != nil {
		opts.SigningKey, opts.KeyID = key.signer, key.id
	}
	if err := policy.WriteBundle(&buf, s.eval.Compiled(), opts); err != nil {
		return err
	}
	s.bundle = buf.Bytes()
	return nil
}

// domainsDirAbs returns dir as an absolute path for messages.
func domainsDirAbs(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
