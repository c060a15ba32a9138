package issuer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the issuer's Prometheus collectors. Labels are bounded: route is one of
// the fixed route names, code an HTTP status (a gRPC code name for the Istio CA API), reason one of the fixed refusal reasons,
// kind one of the issued credential kinds.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	issued   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	domains  prometheus.Gauge
}

// Kinds of issued credentials (the kind label of athenz_mesh_issuer_issued_total).
const (
	kindServiceCert   = "service_certificate"
	kindRoleCert      = "role_certificate"
	kindAccessToken   = "access_token"
	kindRoleToken     = "role_token"
	kindRegisterToken = "register_token"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "athenz_mesh_issuer_requests_total",
			Help: "Requests by route and status: the HTTP status of ZTS API routes, the gRPC code name of the Istio CA API (route istio_create_certificate).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "athenz_mesh_issuer_request_duration_seconds",
			Help:    "ZTS API request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "athenz_mesh_issuer_issued_total",
			Help: "Credentials issued, by kind.",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "athenz_mesh_issuer_refused_total",
			Help: "Requests refused, by route and reason.",
		}, []string{"route", "reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "athenz_mesh_issuer_domain_reloads_total",
			Help: "Reloads of the domains directory, by result (ok, error).",
		}, []string{"result"}),
		domains: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "athenz_mesh_issuer_domains",
			Help: "Domains loaded.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.issued, m.refused, m.reloads, m.domains} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
