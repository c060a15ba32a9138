package issuer

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handlerFunc is a route: it writes its success response itself and returns an error
// (an *apiError, or any error for a 500) to refuse.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the route table.
type route struct {
	name    string // the metrics and audit label
	pattern string // net/http ServeMux pattern, method and path under BasePath
	h       handlerFunc
}

// routeTable lists every ZTS route, one file each (route_<name>.go).
func (s *Server) routeTable() []route {
	return []route{
		{"instance_register", "POST /instance", s.handleInstanceRegister},
		{"instance_refresh", "POST /instance/{provider}/{domain}/{service}/{instanceId}", s.handleInstanceRefresh},
		{"instance_delete", "DELETE /instance/{provider}/{domain}/{service}/{instanceId}", s.handleInstanceDelete},
		{"instance_register_token", "GET /instance/{provider}/{domain}/{service}/{instanceId}/token", s.handleInstanceRegisterToken},
		{"service_refresh", "POST /instance/{domain}/{service}/refresh", s.handleServiceRefresh},
		{"role_certificate", "POST /rolecert", s.handleRoleCert},
		{"role_token_certificate", "POST /domain/{domain}/role/{role}/token", s.handleRoleTokenCert},
		{"access_token", "POST /oauth2/token", s.handleAccessToken},
		{"role_token", "GET /domain/{domain}/token", s.handleRoleToken},
		{"signed_policy_data", "GET /domain/{domain}/signed_policy_data", s.handleSignedPolicyData},
		{"jws_policy_data", "POST /domain/{domain}/policy/signed", s.handleJWSPolicyData},
		{"service_identity", "GET /domain/{domain}/service/{service}", s.handleServiceIdentity},
		{"public_key", "GET /domain/{domain}/service/{service}/publickey/{keyId}", s.handlePublicKey},
		{"jwks", "GET /oauth2/keys", s.handleJWKS},
		{"ca_certs", "GET /cacerts/{name}", s.handleCACerts},
		{"openid_configuration", "GET /.well-known/openid-configuration", s.handleOpenIDConfig},
		{"oauth_configuration", "GET /.well-known/oauth-authorization-server", s.handleOAuthConfig},
		{"bundle", "GET /bundle", s.handleBundle},
	}
}

// routes builds the mux: every route under BasePath, the discovery documents also at the
// root (where OIDC discovery looks for an issuer without a path), health, and a JSON 404
// for everything else.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		h := s.wrap(rt.name, rt.h)
		mux.Handle(method+" "+BasePath+path, h)
		if strings.HasPrefix(path, "/.well-known/") {
			mux.Handle(method+" "+path, h)
		}
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/", s.wrap("unknown", func(w http.ResponseWriter, r *http.Request) error {
		return notFound("no such resource: %s %.200s", r.Method, r.URL.Path)
	}))
	return mux
}

// reqInfo collects what the audit line of a request says. Handlers fill it as they learn.
type reqInfo struct {
	principal, provider, domain, service, instance, role string
	auth                                                 string
}

type reqInfoKey struct{}

// info returns the request's audit record (a throwaway one outside wrap).
func info(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// setCaller records the authenticated caller in the audit record.
func (ri *reqInfo) setCaller(c *caller) {
	if c != nil {
		ri.principal, ri.auth = c.principal, c.method
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets long-poll handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// wrap runs a route: the audit record in the context, the error body and audit line for
// refusals, the request metrics.
func (s *Server) wrap(name string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			ae := asAPIError(err)
			writeError(sw, ae)
			s.metrics.refused.WithLabelValues(name, ae.reason).Inc()
			s.auditRefused(r, name, ae, ri)
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
		s.metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}

// auditRefused writes the audit line of a refusal: server errors at error level with the
// cause, client errors at info level.
func (s *Server) auditRefused(r *http.Request, route string, ae *apiError, ri *reqInfo) {
	attrs := []slog.Attr{
		slog.String("route", route), slog.Int("status", ae.status), slog.String("reason", ae.reason),
		slog.String("message", ae.message), slog.String("client_ip", clientIP(r)),
	}
	attrs = ri.appendAttrs(attrs)
	level := slog.LevelInfo
	if ae.status >= 500 {
		level = slog.LevelError
		if ae.cause != nil {
			attrs = append(attrs, slog.String("error", ae.cause.Error()))
		}
	} else if ae.cause != nil {
		attrs = append(attrs, slog.String("detail", ae.cause.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "refused", attrs...)
}

// auditIssued writes the audit line of an issuance and counts it.
func (s *Server) auditIssued(r *http.Request, route, kind string, extra ...slog.Attr) {
	s.metrics.issued.WithLabelValues(kind).Inc()
	attrs := []slog.Attr{slog.String("route", route), slog.String("kind", kind), slog.String("client_ip", clientIP(r))}
	attrs = info(r).appendAttrs(attrs)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "issued", append(attrs, extra...)...)
}

func (ri *reqInfo) appendAttrs(attrs []slog.Attr) []slog.Attr {
	for _, kv := range [...]struct{ k, v string }{
		{"principal", ri.principal}, {"auth", ri.auth}, {"provider", ri.provider}, {"domain", ri.domain},
		{"service", ri.service}, {"instance_id", ri.instance}, {"role", ri.role},
	} {
		if kv.v != "" {
			attrs = append(attrs, slog.String(kv.k, kv.v))
		}
	}
	return attrs
}

// snap returns the domain data in force.
func (s *Server) snap() *snapshot { return s.domains.current() }
