package sds

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint label values of the token API metrics.
const (
	tapiEPToken     = "token"
	tapiEPRoleToken = "roletoken"
	tapiEPNToken    = "ntoken"
	tapiEPSvcCert   = "svccert"
	tapiEPHealthz   = "healthz"
	tapiEPOther     = "other"
)

// tokenAPIMetrics are the token API's collectors. Labels are bounded: endpoint takes the
// constants above, code the few statuses the API writes, kind the token kinds and
// result/outcome a handful of constants.
type tokenAPIMetrics struct {
	requests *prometheus.CounterVec
	lookups  *prometheus.CounterVec
	fetch    *prometheus.HistogramVec
}

func newTokenAPIMetrics(reg prometheus.Registerer) (*tokenAPIMetrics, error) {
	m := &tokenAPIMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "token_api", Name: "requests_total",
			Help: "Token API requests by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "token_api", Name: "cache_lookups_total",
			Help: "Token cache lookups by token kind and result: hit, miss (a fetch), negative (the remembered failure answered) or stale (a still valid token served while the issuer backs off).",
		}, []string{"kind", "result"}),
		fetch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "token_api", Name: "fetch_seconds",
			Help:    "Time to obtain a token (issuer call, or local signing for n-tokens), by kind, trigger (request or background) and outcome.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind", "trigger", "outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.lookups, m.fetch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registerCacheSize publishes the number of cached tokens and remembered failures. A
// registration error (a second API on the same registry) leaves the gauges out rather
// than failing: the counters above already refused that case.
func (m *tokenAPIMetrics) registerCacheSize(reg prometheus.Registerer, tokens, failures func() int) {
	if reg == nil {
		return
	}
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: "token_api", Name: "cached_tokens",
		Help: "Tokens in the token API's cache.",
	}, func() float64 { return float64(tokens()) }))
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: "token_api", Name: "cached_failures",
		Help: "Failed token fetches the token API remembers (negative cache).",
	}, func() float64 { return float64(failures()) }))
}
