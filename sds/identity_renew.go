package sds

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// issuedCred is a certificate the manager holds, with what refreshing it needs.
type issuedCred struct {
	cred          *Credential
	provider      string
	instanceID    string
	namespace     string
	intermediates []*x509.Certificate
}

func (c *issuedCred) leaf() *x509.Certificate { return leafOf(c.cred) }

// schedule is the renewal state of one certificate.
type schedule struct {
	renewAt time.Time // when to renew a held certificate
	retryAt time.Time // not before this, after a failure
	// gapUntil is not before this, after a success: RetryMin after the last issuance, so
	// that a certificate whose renewal point or expiry is already past on receipt is not
	// re-issued in a tight loop.
	gapUntil time.Time
	failures int // consecutive failures
	lastErr  string
}

// earliest is when another attempt may start: after the backoff of a failure and the
// gap after a success.
func (s *schedule) earliest() time.Time { return later(s.retryAt, s.gapUntil) }

// roleState is one role certificate of an identity.
type roleState struct {
	spec   RoleSpec
	cur    *Credential
	keyOf  crypto.Signer // the identity key it was issued with
	sched  schedule
	expiry time.Time
}

// identityState is one identity: its spec, current certificate and schedule. mu guards
// every field but spec, name and wake, which never change.
type identityState struct {
	spec IdentitySpec
	name string
	// wake makes keep run a step at once (after the schedule was reset). Room for one.
	wake chan struct{}

	mu    sync.Mutex
	cur   *issuedCred
	sched schedule
	roles []*roleState
}

func newIdentityState(spec IdentitySpec) *identityState {
	st := &identityState{spec: spec, name: spec.Name(), wake: make(chan struct{}, 1)}
	for _, r := range spec.Roles {
		st.roles = append(st.roles, &roleState{spec: r})
	}
	return st
}

// poke makes keep run a step at once; it never blocks.
func (st *identityState) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *identityState) current() *issuedCred {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur
}

// keep renews one identity until ctx is done: each step does what is due, then the
// loop waits on the clock until the next thing is.
func (m *Manager) keep(ctx context.Context, st *identityState) {
	for {
		next := m.step(ctx, st)
		if ctx.Err() != nil {
			return
		}
		ch, stop := m.clock.After(max(next.Sub(m.clock.Now()), 0))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-ch:
		case <-st.wake:
		}
		stop()
	}
}

// step withdraws what expired, renews the identity and its role certificates when due,
// and returns when it must run again.
func (m *Manager) step(ctx context.Context, st *identityState) time.Time {
	now := m.clock.Now()
	m.expire(st, now)
	st.mu.Lock()
	due := !now.Before(st.sched.earliest()) && (st.cur == nil || !now.Before(st.sched.renewAt))
	st.mu.Unlock()
	if due {
		err := m.obtain(ctx, st)
		if ctx.Err() != nil {
			return now
		}
		m.recordResult(st, &st.sched, err, "identity")
	}
	m.stepRoles(ctx, st)
	return m.nextWake(st)
}

// recordResult updates a schedule after an attempt: a failure backs off, a success
// resets the count (the caller already set renewAt).
func (m *Manager) recordResult(st *identityState, s *schedule, err error, what string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		s.failures, s.retryAt, s.lastErr = 0, time.Time{}, ""
		return
	}
	s.failures++
	wait := m.backoff(s.failures)
	s.retryAt = m.clock.Now().Add(wait)
	s.lastErr = err.Error()
	m.log.Error("certificate renewal failed; retrying", "identity", st.name, "what", what,
		"failures", s.failures, "retry_in", wait.String(), "error", err)
}

// backoff returns the wait after n consecutive failures: min(RetryMin·2ⁿ⁻¹, RetryMax),
// jittered down by up to half.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	return d/2 + time.Duration(m.jitter()*float64(d/2))
}

// renewPoint is a jittered point between RenewAfter and RenewBefore of cert's life as
// seen from received: of NotBefore to NotAfter, or of received to NotAfter when received
// is later. CAs backdate NotBefore (the issuer by 5 minutes), so for a short lifetime a
// point measured from NotBefore alone can be past when the certificate arrives. A zero
// received measures from NotBefore (a certificate loaded, not just issued).
func (m *Manager) renewPoint(cert *x509.Certificate, received time.Time) time.Time {
	start := later(cert.NotBefore, received)
	life := cert.NotAfter.Sub(start)
	f := m.cfg.RenewAfter + m.jitter()*(m.cfg.RenewBefore-m.cfg.RenewAfter)
	return start.Add(time.Duration(f * float64(life)))
}

// nextWake is the earliest of: the identity's renewal or retry, its expiry, and the same
// for each role certificate.
func (m *Manager) nextWake(st *identityState) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cur == nil {
		return st.sched.earliest()
	}
	next := st.cur.leaf().NotAfter
	if t := later(st.sched.renewAt, st.sched.earliest()); t.Before(next) {
		next = t
	}
	for _, r := range st.roles {
		t := r.sched.earliest()
		if r.cur != nil && r.keyOf == st.cur.cred.Key {
			t = later(r.sched.renewAt, t)
			if r.expiry.Before(t) {
				t = r.expiry
			}
		}
		if t.Before(next) {
			next = t
		}
	}
	return next
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// expire withdraws an identity or role certificate past its expiry: serving an expired
// certificate only breaks handshakes later and hides the outage.
func (m *Manager) expire(st *identityState, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cur != nil && !now.Before(st.cur.leaf().NotAfter) {
		m.log.Error("certificate expired before it could be renewed; withdrawn", "identity", st.name,
			"not_after", st.cur.leaf().NotAfter, "last_error", st.sched.lastErr)
		st.cur = nil
		for _, r := range st.roles {
			r.cur, r.keyOf = nil, nil
		}
		m.sink.RemoveIdentity(st.name)
		return
	}
	for _, r := range st.roles {
		if r.cur != nil && !now.Before(r.expiry) {
			m.log.Error("role certificate expired before it could be renewed; withdrawn", "identity", st.name,
				"role", athenz.JoinRoleName(r.spec.Domain, r.spec.Role))
			r.cur, r.keyOf = nil, nil
			m.sink.RemoveRoleCert(st.name, r.spec.Domain, r.spec.Role)
		}
	}
}

// obtain gets a new certificate: a refresh over mTLS while the current one is valid,
// else (or when the issuer refuses the refresh) a registration with fresh attestation;
// for Istio identities, a new CreateCertificate. A new key is generated every time.
func (m *Manager) obtain(ctx context.Context, st *identityState) error {
	if st.spec.istio != nil {
		return m.obtainIstio(ctx, st)
	}
	if cur := st.current(); cur != nil && m.clock.Now().Before(cur.leaf().NotAfter) {
		err := m.refresh(ctx, st, cur)
		if err == nil || !isRefused(err) {
			return err
		}
		m.log.Warn("certificate refresh refused; registering again", "identity", st.name, "error", err)
	}
	return m.register(ctx, st)
}

func (m *Manager) refresh(ctx context.Context, st *identityState, cur *issuedCred) error {
	key, err := newKey(st.spec.KeyType)
	if err != nil {
		return err
	}
	csr, err := m.serviceCSR(&st.spec, key, cur.instanceID, cur.namespace)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	issued, err := m.issuer.Refresh(tctx, cur.cred, &RefreshRequest{
		Provider: cur.provider, Domain: st.spec.Domain, Service: st.spec.Service, InstanceID: cur.instanceID,
		CSR: csr, Validity: st.spec.Validity,
	})
	m.metrics.count("refresh", err)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", st.name, err)
	}
	return m.install(st, issued, key, cur.provider, cur.namespace, "refresh")
}

func (m *Manager) register(ctx context.Context, st *identityState) error {
	spec := &st.spec
	key, err := newKey(spec.KeyType)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	data, err := spec.Collector.Collect(tctx, attestor.Target{
		Provider: spec.Provider, Domain: spec.Domain, Service: spec.Service, InstanceID: spec.InstanceID,
	})
	if err != nil {
		return fmt.Errorf("register %s: collect attestation: %w", st.name, err)
	}
	instanceID, namespace := spec.InstanceID, spec.Namespace
	if spec.InstanceFromK8sToken {
		uid, ns, err := k8sTokenInstance(data)
		if err != nil {
			return fmt.Errorf("register %s: %w", st.name, err)
		}
		instanceID = cmpOr(instanceID, uid)
		namespace = cmpOr(namespace, ns)
	}
	csr, err := m.serviceCSR(spec, key, instanceID, namespace)
	if err != nil {
		return err
	}
	issued, err := m.issuer.Register(tctx, &RegisterRequest{
		Provider: spec.Provider, Domain: spec.Domain, Service: spec.Service, AttestationData: data,
		CSR: csr, Validity: spec.Validity, Namespace: namespace,
	})
	m.metrics.count("register", err)
	if err != nil {
		return fmt.Errorf("register %s: %w", st.name, err)
	}
	if ot, ok := spec.Collector.(attestor.OneTime); ok {
		if err := ot.Used(ctx); err != nil {
			m.log.Warn("could not discard the spent attestation token", "identity", st.name, "error", err)
		}
	}
	return m.install(st, issued, key, spec.Provider, namespace, "register")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// install checks what the issuer returned and makes it current: cache, bundle, files.
func (m *Manager) install(st *identityState, issued *IssuedIdentity, key crypto.Signer, provider, namespace, how string) error {
	certs, err := parseCertsPEM(issued.CertificatePEM)
	if err != nil || len(certs) == 0 {
		return fmt.Errorf("%s %s: the issuer returned no usable certificate: %v", how, st.name, err)
	}
	if !keyMatches(certs[0], key) {
		return fmt.Errorf("%s %s: the issued certificate is not for the key sent", how, st.name)
	}
	signer, err := parseCertsPEM(issued.SignerPEM)
	if err != nil {
		return fmt.Errorf("%s %s: CA certificates: %w", how, st.name, err)
	}
	inter, roots := splitSigner(signer)
	chain := certs
	if len(certs) == 1 {
		chain = append(chain, inter...)
	}
	_, instanceID, _ := instanceOf(certs[0])
	ic := &issuedCred{
		cred: &Credential{Chain: chain, Key: key}, provider: provider,
		instanceID: cmpOr(instanceID, issued.InstanceID), namespace: namespace, intermediates: inter,
	}
	return m.commit(st, ic, roots, how)
}

// commit makes a checked credential current: cache, bundle (when roots are given),
// schedule, files. The roots of a ZTS answer replace the bundle's; those of an Istio CA
// answer (its signing root only) are added to it (mergeRoots).
func (m *Manager) commit(st *identityState, ic *issuedCred, roots []*x509.Certificate, how string) error {
	leaf := ic.leaf()
	if err := m.sink.SetIdentity(st.name, ic.cred); err != nil {
		return fmt.Errorf("%s %s: %w", how, st.name, err)
	}
	switch {
	case len(roots) == 0:
	case st.spec.istio != nil:
		roots = m.mergeRoots(roots)
	default:
		m.setRoots(roots)
	}
	now := m.clock.Now()
	st.mu.Lock()
	st.cur = ic
	st.sched.renewAt = m.renewPoint(leaf, now)
	st.sched.gapUntil = now.Add(m.cfg.RetryMin)
	renewAt := st.sched.renewAt
	st.mu.Unlock()
	m.writeIdentityFiles(st, ic.cred, roots)
	m.log.Info("certificate issued", "identity", st.name, "how", how, "instance", ic.instanceID,
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter, "renew_at", renewAt)
	return nil
}

// stepRoles renews the role certificates that are due: missing, issued with a key the
// identity no longer has, or past their renewal point.
func (m *Manager) stepRoles(ctx context.Context, st *identityState) {
	for _, r := range st.roles {
		now := m.clock.Now()
		st.mu.Lock()
		cur := st.cur
		due := cur != nil && !now.Before(r.sched.earliest()) &&
			(r.cur == nil || r.keyOf != cur.cred.Key || !now.Before(r.sched.renewAt))
		st.mu.Unlock()
		if !due {
			continue
		}
		err := m.obtainRole(ctx, st, r, cur)
		if ctx.Err() != nil {
			return
		}
		m.recordResult(st, &r.sched, err, "role "+athenz.JoinRoleName(r.spec.Domain, r.spec.Role))
	}
}

func (m *Manager) obtainRole(ctx context.Context, st *identityState, r *roleState, cur *issuedCred) error {
	role := athenz.JoinRoleName(r.spec.Domain, r.spec.Role)
	csr, err := m.roleCSR(&st.spec, r.spec, cur.cred.Key, cur.instanceID)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	certPEM, err := m.issuer.RoleCertificate(tctx, cur.cred, &RoleCertRequest{CSR: csr, Validity: st.spec.RoleValidity})
	m.metrics.count("role_certificate", err)
	if err != nil {
		return fmt.Errorf("role certificate %s for %s: %w", role, st.name, err)
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil || len(certs) == 0 || !keyMatches(certs[0], cur.cred.Key) {
		return fmt.Errorf("role certificate %s for %s: the issuer returned no certificate for the key sent (%v)", role, st.name, err)
	}
	chain := certs
	if len(certs) == 1 {
		chain = append(slices.Clone(certs), cur.intermediates...)
	}
	cred := &Credential{Chain: chain, Key: cur.cred.Key}
	if err := m.sink.SetRoleCert(st.name, r.spec.Domain, r.spec.Role, cred); err != nil {
		return err
	}
	now := m.clock.Now()
	st.mu.Lock()
	r.cur, r.keyOf, r.expiry = cred, cur.cred.Key, certs[0].NotAfter
	r.sched.renewAt = m.renewPoint(certs[0], now)
	r.sched.gapUntil = now.Add(m.cfg.RetryMin)
	st.mu.Unlock()
	if m.files != nil {
		if err := m.files.WriteRoleCert(r.spec.Domain, r.spec.Role, cred); err != nil {
			m.fileError(st.name, err)
		}
	}
	m.log.Info("role certificate issued", "identity", st.name, "role", role, "not_after", certs[0].NotAfter)
	return nil
}

func (m *Manager) writeIdentityFiles(st *identityState, cred *Credential, roots []*x509.Certificate) {
	if m.files == nil {
		return
	}
	if err := m.files.WriteIdentity(st.spec.Domain, st.spec.Service, cred); err != nil {
		m.fileError(st.name, err)
	}
	if len(roots) > 0 {
		if err := m.files.WriteCA(roots); err != nil {
			m.fileError(st.name, err)
		}
	}
}

// fileError logs a failed file write. The credential is still served over the socket;
// the files are written again at the next renewal.
func (m *Manager) fileError(identity string, err error) {
	m.metrics.fileErrors.Inc()
	m.log.Error("writing credential files failed", "identity", identity, "error", err)
}

// loadFromFiles starts an identity from the certificate and key the Files hold from a
// previous run, when they are valid, so that a restarted agent refreshes instead of
// registering again (a one-time join token cannot register twice).
func (m *Manager) loadFromFiles(st *identityState) {
	if m.files == nil {
		return
	}
	if err := m.reuseFiles(st); err != nil {
		m.log.Info("credential files not reused", "identity", st.name, "reason", err.Error())
	}
}

// reuseFiles makes the credential in the Files current, or says why it cannot.
func (m *Manager) reuseFiles(st *identityState) error {
	cred, err := m.files.LoadIdentity(st.spec.Domain, st.spec.Service)
	if err != nil {
		return err
	}
	leaf := leafOf(cred)
	provider, instanceID, ok := instanceOf(leaf)
	switch {
	case !ok:
		return errors.New("the certificate has no instance id")
	case provider != st.spec.Provider:
		return fmt.Errorf("the certificate was issued through provider %q, not %q", provider, st.spec.Provider)
	case !m.clock.Now().Before(leaf.NotAfter):
		return fmt.Errorf("the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := m.sink.SetIdentity(st.name, cred); err != nil {
		return err
	}
	if roots, err := m.files.LoadCA(); err == nil && len(roots) > 0 {
		m.setRoots(roots)
	}
	inter := slices.Clone(cred.Chain[1:])
	st.mu.Lock()
	st.cur = &issuedCred{cred: cred, provider: provider, instanceID: instanceID, namespace: spiffeNamespaceOf(leaf), intermediates: inter}
	st.sched.renewAt = m.renewPoint(leaf, time.Time{})
	st.mu.Unlock()
	m.log.Info("certificate loaded from files", "identity", st.name, "not_after", leaf.NotAfter, "instance", instanceID)
	return nil
}

// setRoots installs the trust bundle with the roots the issuer sent.
func (m *Manager) setRoots(roots []*x509.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &Bundle{Roots: roots, TrustDomains: m.trustDomainsLocked()}
	if err := m.sink.SetBundle(b); err != nil {
		m.log.Error("trust bundle refused", "error", err)
		return
	}
	m.bundle = b
}

// mergeRoots adds to the trust bundle the roots it lacks and returns the bundle's roots.
// An Istio CA answer names only the root that signed it (the last certificate), so during
// a root rotation answers name one root or the other: replacing the bundle with it would
// drop the root the other peers' certificates still chain to. A root leaves the bundle
// only through setRoots (ZTS answers, the CA file) or when it expires.
func (m *Manager) mergeRoots(add []*x509.Certificate) []*x509.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	var roots []*x509.Certificate
	if m.bundle != nil {
		for _, r := range m.bundle.Roots {
			if now.Before(r.NotAfter) || slices.ContainsFunc(add, r.Equal) {
				roots = append(roots, r)
			}
		}
	}
	for _, r := range add {
		if !slices.ContainsFunc(roots, r.Equal) {
			roots = append(roots, r)
		}
	}
	if m.bundle != nil && slices.EqualFunc(roots, m.bundle.Roots, (*x509.Certificate).Equal) {
		return roots
	}
	b := &Bundle{Roots: roots, TrustDomains: m.trustDomainsLocked()}
	if err := m.sink.SetBundle(b); err != nil {
		m.log.Error("trust bundle refused", "error", err)
		return roots
	}
	m.bundle = b
	return roots
}

// refreshTrustDomains re-sets the bundle when the set of trust domains changed (node
// mode adds identities).
func (m *Manager) refreshTrustDomains() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bundle == nil {
		return
	}
	tds := m.trustDomainsLocked()
	if slices.Equal(tds, m.bundle.TrustDomains) {
		return
	}
	b := &Bundle{Roots: m.bundle.Roots, TrustDomains: tds}
	if err := m.sink.SetBundle(b); err == nil {
		m.bundle = b
	}
}

// trustDomainsLocked computes Bundle.TrustDomains (see ManagerConfig.TrustDomains).
func (m *Manager) trustDomainsLocked() []string {
	if len(m.cfg.TrustDomains) > 0 {
		return m.cfg.TrustDomains
	}
	if m.node != nil && m.node.Istio != nil {
		// Node identities are Istio's: the bundle anchors the mesh's trust domain, and
		// the Athenz one when set.
		tds := []string{m.node.Istio.trustDomain()}
		if td := m.cfg.SpiffeTrustDomain; td != "" && td != tds[0] {
			tds = append(tds, td)
		}
		return tds
	}
	if m.cfg.SpiffeTrustDomain != "" {
		return []string{m.cfg.SpiffeTrustDomain}
	}
	var tds []string
	for _, st := range m.states {
		tds = append(tds, st.spec.Domain)
		for _, r := range st.spec.Roles {
			tds = append(tds, r.Domain)
		}
	}
	slices.Sort(tds)
	return slices.Compact(tds)
}
