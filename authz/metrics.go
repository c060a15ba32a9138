package authz

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// metricsNamespace prefixes every metric name.
const metricsNamespace = "athenz_mesh_authz"

// Metric label values for results (decisions_total{result}).
const (
	resultAllow      = "allow"
	resultDeny       = "deny"
	resultError      = "error"
	resultDryRunDeny = "dry_run_deny"
)

// maxLearnedReasons bounds the reason label values taken from credential errors beyond
// CredentialReasons (a custom CallerSource may use its own); further values are counted
// as "other".
const maxLearnedReasons = 32

// metrics holds the server's Prometheus collectors, registered on the registry passed to
// New. Labels are bounded: results are fixed, reasons are the policy reasons plus the
// server's own plus at most maxLearnedReasons credential reasons.
type metrics struct {
	decisions   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter

	bundleInfo      *prometheus.GaugeVec
	bundleLoads     prometheus.Counter
	bundleFailures  *prometheus.CounterVec
	bundleLastCheck prometheus.Gauge
	ready           prometheus.Gauge

	mu      sync.RWMutex
	reasons map[string]bool // label values seen or known
	learned int
}

// Reasons the server gives besides policy.Reason values and credential reasons.
const (
	reasonBypass          = "bypass"
	reasonHeadersTooLarge = "headers_too_large"
	reasonNoBundle        = "no_bundle"
	reasonInternal        = "internal_error"
	reasonOther           = "other"
)

func newMetrics(reg prometheus.Registerer, bundleAge func() float64) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "decisions_total",
			Help:      "Checks answered, by result (allow, deny, error, dry_run_deny) and reason. A 401 is a deny whose reason is the credential problem; error means no decision could be made.",
		}, []string{"result", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "decision_duration_seconds",
			Help:      "Time from receiving a check to answering it, inside the server, by transport (grpc, http).",
			Buckets:   []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 0.25, 1},
		}, []string{"transport"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "decision_cache_hits_total",
			Help:      "Decisions served from the decision cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "decision_cache_misses_total",
			Help:      "Decisions computed because the cache had no valid entry.",
		}),
		bundleInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace,
			Name:      "bundle_info",
			Help:      "1 for the revision of the policy bundle in force.",
		}, []string{"revision"}),
		bundleLoads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "bundle_loads_total",
			Help:      "Policy bundles loaded and put in force.",
		}),
		bundleFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "bundle_load_failures_total",
			Help:      "Policy bundle fetches or loads that failed, by reason (fetch, invalid, too_large, unsigned, signature, prepare); the last good bundle stays in force.",
		}, []string{"reason"}),
		bundleLastCheck: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace,
			Name:      "bundle_last_success_timestamp_seconds",
			Help:      "When the bundle source was last read successfully (a load, or confirmation that nothing changed).",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace,
			Name:      "ready",
			Help:      "1 once a policy bundle is loaded and checks are decided.",
		}),
		reasons: make(map[string]bool),
	}
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "bundle_age_seconds",
		Help:      "Seconds since the bundle in force was loaded; 0 before the first.",
	}, bundleAge)
	for _, c := range []prometheus.Collector{m.decisions, m.latency, m.cacheHits, m.cacheMisses, m.bundleInfo, m.bundleLoads, m.bundleFailures, m.bundleLastCheck, m.ready, age} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []policy.Reason{policy.ReasonAllowed, policy.ReasonDenied, policy.ReasonNoMatch, policy.ReasonNotMember,
		policy.ReasonMemberExpired, policy.ReasonUnknownDomain, policy.ReasonDomainMismatch, policy.ReasonInvalid, policy.ReasonUnknownPrincipal} {
		m.reasons[string(r)] = true
	}
	for _, r := range append(CredentialReasons(), reasonBypass, reasonHeadersTooLarge, reasonNoBundle, reasonInternal, reasonOther) {
		m.reasons[r] = true
	}
	return m, nil
}

// reasonLabel bounds a reason for use as a label value.
func (m *metrics) reasonLabel(reason string) string {
	m.mu.RLock()
	known := m.reasons[reason]
	m.mu.RUnlock()
	if known {
		return reason
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reasons[reason] {
		return reason
	}
	if m.learned >= maxLearnedReasons || !labelSafe(reason) {
		return reasonOther
	}
	m.learned++
	m.reasons[reason] = true
	return reason
}

// labelSafe accepts short snake_case values.
func labelSafe(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// observe records one answered check.
func (m *metrics) observe(r *Result, transport string, took time.Duration) {
	m.decisions.WithLabelValues(r.metricResult(), m.reasonLabel(r.Reason)).Inc()
	m.latency.WithLabelValues(transport).Observe(took.Seconds())
}

// bundleLoaded records a bundle put in force.
func (m *metrics) bundleLoaded(revision string, at time.Time) {
	m.bundleLoads.Inc()
	m.bundleInfo.Reset()
	m.bundleInfo.WithLabelValues(revision).Set(1)
	m.bundleLastCheck.Set(float64(at.UnixNano()) / 1e9)
	m.ready.Set(1)
}

// bundleChecked records that the source was read and nothing changed.
func (m *metrics) bundleChecked(at time.Time) {
	m.bundleLastCheck.Set(float64(at.UnixNano()) / 1e9)
}

// bundleFailed records a refused or failed load.
func (m *metrics) bundleFailed(reason string) {
	m.bundleFailures.WithLabelValues(reason).Inc()
}
