package sds

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsNamespace prefixes every metric name.
const metricsNamespace = "athenz_mesh_agent"

// API label values: which protocol a stream or call speaks.
const (
	apiSotW     = "sds_sotw"
	apiDelta    = "sds_delta"
	apiFetch    = "sds_fetch"
	apiX509SVID = "workload_x509_svid"
	apiBundles  = "workload_x509_bundles"
	apiJWT      = "workload_jwt"
)

// metrics are the server's Prometheus collectors. Labels are bounded: api and reason take
// the constant values above.
type metrics struct {
	streams   *prometheus.GaugeVec
	responses *prometheus.CounterVec
	nacks     *prometheus.CounterVec
	leftOut   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "sds", Name: "streams",
			Help: "Open SDS and Workload API streams.",
		}, []string{"api"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "sds", Name: "responses_total",
			Help: "Responses sent on SDS and Workload API streams and calls.",
		}, []string{"api"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "sds", Name: "nacks_total",
			Help: "SDS responses rejected by the client (NACK).",
		}, []string{"api"}),
		leftOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "sds", Name: "left_out_total",
			Help: "Requested resource names left out of a response, by reason (counted once per stream and name).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.responses, m.nacks, m.leftOut} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// rateLimitedLog logs at most burst records at once and rate records a second after
// that, and reports how many it dropped on the next record it lets through. It keeps
// refused names and NACKs visible without letting a misconfigured client fill the disk.
type rateLimitedLog struct {
	log   *slog.Logger
	rate  float64
	burst float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
}

func newRateLimitedLog(log *slog.Logger, perSecond, burst int) *rateLimitedLog {
	return &rateLimitedLog{log: log, rate: float64(perSecond), burst: float64(burst), tokens: float64(burst)}
}

func (l *rateLimitedLog) Log(level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.tokens--
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	l.log.Log(context.Background(), level, msg, args...)
}
