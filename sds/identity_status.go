package sds

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// IdentityStatus is the state of one identity, for health endpoints and logs.
type IdentityStatus struct {
	// Name is the principal.
	Name string `json:"name"`
	// Valid says a certificate is held and not expired.
	Valid bool `json:"valid"`
	// NotAfter is the certificate's expiry (zero without one) and ExpiresIn the time
	// left.
	NotAfter  time.Time     `json:"not_after,omitzero"`
	ExpiresIn time.Duration `json:"expires_in_ns,omitempty"`
	// RenewAt is the planned renewal; RetryAt, after a failure, the next attempt.
	RenewAt time.Time `json:"renew_at,omitzero"`
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Failures counts consecutive failed attempts and LastError says why the last failed.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Roles are the role certificates.
	Roles []RoleStatus `json:"roles,omitempty"`
}

// RoleStatus is the state of one role certificate.
type RoleStatus struct {
	Role      string    `json:"role"`
	Valid     bool      `json:"valid"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Failures  int       `json:"failures,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

// Status returns the state of every identity, sorted by name.
func (m *Manager) Status() []IdentityStatus {
	now := m.clock.Now()
	var out []IdentityStatus
	for _, name := range m.Identities() {
		st := m.state(name)
		if st == nil {
			continue
		}
		st.mu.Lock()
		s := IdentityStatus{Name: name, RenewAt: st.sched.renewAt, RetryAt: st.sched.retryAt, Failures: st.sched.failures, LastError: st.sched.lastErr}
		if st.cur != nil {
			s.NotAfter = st.cur.leaf().NotAfter
			s.Valid = now.Before(s.NotAfter)
			s.ExpiresIn = max(s.NotAfter.Sub(now), 0)
		}
		for _, r := range st.roles {
			rs := RoleStatus{Role: athenz.JoinRoleName(r.spec.Domain, r.spec.Role), Failures: r.sched.failures, LastError: r.sched.lastErr}
			if r.cur != nil {
				rs.NotAfter, rs.Valid = r.expiry, now.Before(r.expiry)
			}
			s.Roles = append(s.Roles, rs)
		}
		st.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Ready returns nil when the trust bundle is set and every configured identity holds a
// valid certificate (role certificates are not required); else an error saying what is
// missing.
func (m *Manager) Ready() error {
	var errs []error
	m.mu.Lock()
	haveBundle := m.bundle != nil
	m.mu.Unlock()
	if !haveBundle {
		errs = append(errs, errors.New("no trust bundle yet"))
	}
	for _, s := range m.Status() {
		if !s.Valid {
			msg := "no valid certificate"
			if s.LastError != "" {
				msg += ": " + s.LastError
			}
			errs = append(errs, fmt.Errorf("%s: %s", s.Name, msg))
		}
	}
	return errors.Join(errs...)
}

// managerMetrics are the manager's Prometheus metrics. Labels are bounded by the
// identities and roles the agent keeps.
type managerMetrics struct {
	requests   *prometheus.CounterVec
	fileErrors prometheus.Counter
	expiry     *prometheus.Desc
	failures   *prometheus.Desc
	m          *Manager
}

func newManagerMetrics(reg prometheus.Registerer, m *Manager) (*managerMetrics, error) {
	mm := &managerMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "athenz_mesh_agent_issuer_requests_total",
			Help: "Calls to the issuer by operation (register, refresh, role_certificate, access_token, role_token, istio_create_certificate) and result (ok, refused, error).",
		}, []string{"op", "result"}),
		fileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "athenz_mesh_agent_file_write_errors_total",
			Help: "Failed writes of credential files.",
		}),
		expiry: prometheus.NewDesc("athenz_mesh_agent_certificate_expiry_seconds",
			"Seconds until the certificate expires (0 when none is held), by identity and role (empty for the service certificate).",
			[]string{"identity", "role"}, nil),
		failures: prometheus.NewDesc("athenz_mesh_agent_renewal_failures",
			"Consecutive failed renewal attempts, by identity.", []string{"identity"}, nil),
		m: m,
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{mm.requests, mm.fileErrors, mm} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("identity manager metrics: %w", err)
			}
		}
	}
	return mm, nil
}

// count records one issuer call.
func (mm *managerMetrics) count(op string, err error) {
	result := "ok"
	switch {
	case isRefused(err):
		result = "refused"
	case err != nil:
		result = "error"
	}
	mm.requests.WithLabelValues(op, result).Inc()
}

// Describe implements prometheus.Collector.
func (mm *managerMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- mm.expiry
	ch <- mm.failures
}

// Collect implements prometheus.Collector: time to expiry is computed at scrape time.
func (mm *managerMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range mm.m.Status() {
		ch <- prometheus.MustNewConstMetric(mm.expiry, prometheus.GaugeValue, s.ExpiresIn.Seconds(), s.Name, "")
		ch <- prometheus.MustNewConstMetric(mm.failures, prometheus.GaugeValue, float64(s.Failures), s.Name)
		now := mm.m.clock.Now()
		for _, r := range s.Roles {
			left := 0.0
			if r.Valid {
				left = r.NotAfter.Sub(now).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(mm.expiry, prometheus.GaugeValue, left, s.Name, r.Role)
		}
	}
}
