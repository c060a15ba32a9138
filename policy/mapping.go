package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Context extension keys that a route (Envoy's per-route ext_authz context_extensions, or
// an Istio AuthorizationPolicy's provider settings) sets to override the mapping.
const (
	// ContextDomain names the Athenz domain of the route's resources.
	ContextDomain = "athenz.domain"
	// ContextAction replaces the action (by default the lower-cased HTTP method).
	ContextAction = "athenz.action"
	// ContextResource replaces the entity part of the resource (by default the request
	// path without its query string). The resource is always "<domain>:<entity>".
	ContextResource = "athenz.resource"
)

// Mapping says how an Envoy CheckRequest becomes (principal, domain, action, resource).
// It travels in the bundle (data.athenz.mapping) so that opa-envoy-plugin, through the
// bundle's envoy.authz Rego, and the native authz server map requests the same way; a test
// runs the cases in testdata/mapping through both. The zero Mapping, and a nil *Mapping,
// is the default mapping: SPIFFE IDs in the two Athenz forms, the domain from the route's
// context extensions, action from the method, resource from the path.
//
// Table keys are matched exactly; Validate checks that they have the form lookups use.
type Mapping struct {
	// DefaultDomain is the domain used when neither the route's context extensions nor
	// Hosts name one. Empty: such requests are invalid.
	DefaultDomain string `json:"default_domain,omitempty"`
	// Hosts maps a lower-case request host (the :authority, with or without its port) to a
	// domain, for gateways that serve several domains. The host is looked up first as
	// sent, then without a trailing ":<port>". Nil: no host rules.
	Hosts map[string]string `json:"hosts,omitempty"`
	// Principals maps a source principal (the peer's SPIFFE ID, exactly as Envoy reports
	// it) to an Athenz principal, ahead of the naming rules. Nil: only the naming rules.
	Principals map[string]string `json:"principals,omitempty"`
	// Routes are request rules tried in order: the first whose every non-empty condition
	// holds supplies the domain, action and entity it sets, ahead of Hosts and of the
	// method and path (the route's context extensions still win). Nil: no rules.
	Routes []Route `json:"routes,omitempty"`
	// Namespaces maps a Kubernetes namespace to an Athenz domain, so that an Istio identity
	// spiffe://<trust domain>/ns/<namespace>/sa/<sa> whose service account has no dot
	// becomes the principal "<domain>.<sa>". Each pair is shorthand for an Istio entry
	// {namespace, service_account: "*", domain}. Nil: only Istio.
	Namespaces map[string]string `json:"namespaces,omitempty"`
	// Istio maps the namespace and service account of an Istio identity
	// spiffe://<trust domain>/ns/<ns>/sa/<sa> whose service account has no dot to an Athenz
	// service: the athenz.IstioMapping (explicit entries, then a naming rule) that the
	// Kubernetes attestor and the issuer's Istio CA apply too, so that the principal authz
	// sees is the one the certificate's CN names. Nil: only Namespaces.
	Istio *athenz.IstioMapping `json:"istio,omitempty"`
	// AthenzTrustDomains are the SPIFFE trust domains whose namespaced IDs
	// spiffe://<td>/ns/<ns>/sa/<domain>.<service> name an Athenz principal: the form the
	// athenz-mesh issuer (certificates.spiffe_trust_domain) and Athenz SIA write. Only
	// a CA that issues Athenz identities may own such a trust domain: Kubernetes allows
	// dots in service account names, so in a trust domain of Istio's CA the service
	// account "sys.auth.zts" of any namespace would otherwise be the principal
	// sys.auth.zts. Nil: that form is never an Athenz principal, and a dotted service
	// account goes through the Istio mapping like any other.
	AthenzTrustDomains []string `json:"athenz_trust_domains,omitempty"`
}

// Route is one request rule of a Mapping. Conditions left empty match every request; a
// Route without conditions matches all of them (a catch-all at the end of the list).
type Route struct {
	// Host matches the lower-case request host, as sent or without its ":<port>".
	Host string `json:"host,omitempty"`
	// PathPrefix matches when the path, without its query string, starts with it.
	PathPrefix string `json:"path_prefix,omitempty"`
	// GRPCService matches gRPC requests, whose path is "/<service>/<method>", for this
	// fully qualified service (for example "shop.v1.Orders").
	GRPCService string `json:"grpc_service,omitempty"`
	// GRPCMethod, with GRPCService, narrows the match to one method.
	GRPCMethod string `json:"grpc_method,omitempty"`

	// Domain, Action and Resource (the entity after "<domain>:") are what the rule sets;
	// each left empty falls through to the next source (Hosts and DefaultDomain, the
	// method, the path).
	Domain   string `json:"domain,omitempty"`
	Action   string `json:"action,omitempty"`
	Resource string `json:"resource,omitempty"`
}

// matches reports whether the route's conditions hold for a request with the given
// lower-case host and query-less path.
func (rt *Route) matches(host, path string) bool {
	if rt.Host != "" && rt.Host != host && rt.Host != stripPort(host) {
		return false
	}
	if rt.PathPrefix != "" && !strings.HasPrefix(path, rt.PathPrefix) {
		return false
	}
	if rt.GRPCService != "" {
		svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if !strings.HasPrefix(path, "/") || !ok || strings.Contains(method, "/") || svc != rt.GRPCService {
			return false
		}
		if rt.GRPCMethod != "" && method != rt.GRPCMethod {
			return false
		}
	}
	return true
}

// route returns the first route matching r, or nil.
func (m *Mapping) route(r EnvoyRequest) *Route {
	if len(m.Routes) == 0 {
		return nil
	}
	host := strings.ToLower(r.Host)
	path, _, _ := strings.Cut(r.Path, "?")
	for i := range m.Routes {
		if m.Routes[i].matches(host, path) {
			return &m.Routes[i]
		}
	}
	return nil
}

// EnvoyRequest is the part of an Envoy CheckRequest that request mapping reads.
type EnvoyRequest struct {
	// Method is the HTTP method (attributes.request.http.method).
	Method string
	// Path is the HTTP path with its query string (attributes.request.http.path).
	Path string
	// Host is the HTTP :authority (attributes.request.http.host).
	Host string
	// SourcePrincipal is the peer's mTLS identity (attributes.source.principal): the URI
	// SAN of its certificate. Empty when the peer presented no certificate.
	SourcePrincipal string
	// ContextExtensions are the route's context_extensions; see ContextDomain and friends.
	ContextExtensions map[string]string
}

// MappedRequest is an Envoy request in Athenz terms.
type MappedRequest struct {
	Principal string `json:"principal"`
	Domain    string `json:"domain"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
}

// Request returns the authorization question for the mapped request, asked at time at
// (zero: now).
func (m MappedRequest) Request(at time.Time) Request {
	return Request{Principal: m.Principal, Action: m.Action, Resource: m.Resource, Time: at}
}

// Map turns an Envoy request into an Athenz request. The returned Reason is empty when the
// request maps; otherwise it is ReasonUnknownPrincipal (no Athenz principal for the source
// principal, checked first) or ReasonInvalid (no domain), and the request must be denied
// with it. Mapping never lower-cases or validates beyond that: the decision does.
//
// The rules, identical in the bundle's envoy.authz Rego:
//   - principal: Principals[source]; else spiffe://<domain>/sa/<service> gives
//     "<domain>.<service>"; else spiffe://<td>/ns/<ns>/sa/<sa> gives <sa> when td is one
//     of AthenzTrustDomains and sa contains a dot (the Athenz "domain.service" form, which
//     must then be a valid principal), and otherwise the "<domain>.<service>" that the
//     Istio mapping gives (see IstioService); anything else is unknown.
//   - route: the first of Routes whose conditions hold (see Route), if any;
//   - domain: context extension athenz.domain; else the route's Domain; else
//     Hosts[lower(host)]; else Hosts of the host without ":<port>"; else DefaultDomain.
//   - action: context extension athenz.action; else the route's Action; else the
//     lower-cased method.
//   - resource: "<domain>:" + (context extension athenz.resource, else the route's
//     Resource, else the path up to its first "?").
//
// Empty strings in context extensions and tables count as absent. m may be nil.
func (m *Mapping) Map(r EnvoyRequest) (MappedRequest, Reason) {
	if m == nil {
		m = &Mapping{}
	}
	principal, ok := m.Principal(r.SourcePrincipal)
	if !ok {
		return MappedRequest{}, ReasonUnknownPrincipal
	}
	rt := m.route(r)
	if rt == nil {
		rt = &Route{}
	}
	domain := m.domain(r, rt)
	if domain == "" {
		return MappedRequest{}, ReasonInvalid
	}
	action := r.ContextExtensions[ContextAction]
	if action == "" {
		action = rt.Action
	}
	if action == "" {
		action = strings.ToLower(r.Method)
	}
	entity := r.ContextExtensions[ContextResource]
	if entity == "" {
		entity = rt.Resource
	}
	if entity == "" {
		entity, _, _ = strings.Cut(r.Path, "?")
	}
	return MappedRequest{Principal: principal, Domain: domain, Action: action, Resource: domain + ":" + entity}, ""
}

// Principal maps a source principal to an Athenz principal, as Map does. m may be nil.
func (m *Mapping) Principal(source string) (string, bool) {
	if m != nil {
		if p := m.Principals[source]; p != "" {
			return p, true
		}
	}
	rest, ok := strings.CutPrefix(source, "spiffe://")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 3 && parts[0] != "" && parts[1] == "sa" && parts[2] != "":
		return parts[0] + "." + parts[2], true
	case len(parts) == 5 && parts[0] != "" && parts[1] == "ns" && parts[2] != "" && parts[3] == "sa" && parts[4] != "":
		if m.athenzTrustDomain(parts[0]) && strings.Contains(parts[4], ".") {
			return parts[4], athenz.IsServiceName(parts[4])
		}
		if d, s, ok := m.IstioService(parts[2], parts[4]); ok {
			return d + "." + s, true
		}
	}
	return "", false
}

// athenzTrustDomain reports whether td is one of AthenzTrustDomains.
func (m *Mapping) athenzTrustDomain(td string) bool {
	return m != nil && slices.Contains(m.AthenzTrustDomains, td)
}

// IstioService maps a Kubernetes namespace and service account to an Athenz domain and
// service as athenz.IstioMapping.Map does with Istio, with Namespaces[namespace] taken as
// an entry for every service account of the namespace: an exact entry of Istio, else
// Namespaces, else a wildcard entry of Istio, else Istio's naming rule. (Validate refuses a
// namespace in both Namespaces and a wildcard entry.) m may be nil.
func (m *Mapping) IstioService(namespace, serviceAccount string) (domain, service string, ok bool) {
	if m == nil || !athenz.IsKubernetesNamespace(namespace) || !athenz.IsKubernetesName(serviceAccount) {
		return "", "", false
	}
	e := m.Istio.Entry(namespace, serviceAccount)
	if d := m.Namespaces[namespace]; d != "" && (e == nil || e.ServiceAccount == "*") {
		short := athenz.IstioMappingEntry{Namespace: namespace, ServiceAccount: "*", Domain: d}
		return short.Map(serviceAccount)
	}
	if e != nil {
		return e.Map(serviceAccount)
	}
	if m.Istio == nil {
		return "", "", false
	}
	return m.Istio.Rule.Map(namespace, serviceAccount)
}

// domain resolves the request's domain, "" when nothing names one.
func (m *Mapping) domain(r EnvoyRequest, rt *Route) string {
	if d := r.ContextExtensions[ContextDomain]; d != "" {
		return d
	}
	if rt.Domain != "" {
		return rt.Domain
	}
	host := strings.ToLower(r.Host)
	if d := m.Hosts[host]; d != "" {
		return d
	}
	if d := m.Hosts[stripPort(host)]; d != "" {
		return d
	}
	return m.DefaultDomain
}

// stripPort removes a trailing ":<digits>" from host (the Rego uses the same rule as the
// regular expression `:[0-9]+$`).
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i == len(host)-1 {
		return host
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}

// Validate reports every entry that lookups could never reach: Hosts keys that are not
// lower-case or carry a path, and empty keys or values. m may be nil.
func (m *Mapping) Validate() error {
	if m == nil {
		return nil
	}
	var problems []string
	check := func(table string, t map[string]string, keyOK func(string) string) {
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if t[k] == "" {
				problems = append(problems, fmt.Sprintf("%s[%q]: empty value", table, k))
			}
			if k == "" {
				problems = append(problems, fmt.Sprintf("%s: empty key", table))
			} else if p := keyOK(k); p != "" {
				problems = append(problems, fmt.Sprintf("%s[%q]: %s", table, k, p))
			}
		}
	}
	check("hosts", m.Hosts, func(k string) string {
		switch {
		case strings.ToLower(k) != k:
			return "host must be lower-case"
		case strings.ContainsAny(k, "/?# "):
			return "want a host name with an optional :port, not a URL"
		}
		return ""
	})
	check("principals", m.Principals, func(string) string { return "" })
	check("namespaces", m.Namespaces, func(k string) string {
		switch {
		case !athenz.IsKubernetesNamespace(k):
			return "not a Kubernetes namespace name (a DNS label)"
		case m.Istio.Entry(k, "*") != nil:
			return "the namespace also has an istio entry for service account \"*\"; keep one"
		case m.Namespaces[k] != "" && !athenz.IsDomainName(m.Namespaces[k]):
			return fmt.Sprintf("%q is not a domain name", m.Namespaces[k])
		}
		return ""
	})
	for i, td := range m.AthenzTrustDomains {
		// A SPIFFE trust domain: lower-case letters, digits, ".", "-" and "_".
		if td == "" || strings.Trim(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
			problems = append(problems, fmt.Sprintf("athenz_trust_domains[%d]: %q is not a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')", i, td))
		}
	}
	if err := m.Istio.Validate(); err != nil {
		for _, e := range unjoin(err) {
			problems = append(problems, "istio: "+e.Error())
		}
	}
	for i, rt := range m.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		switch {
		case rt.Domain == "" && rt.Action == "" && rt.Resource == "":
			problems = append(problems, at+": sets nothing; give at least one of domain, action, resource")
		case rt.GRPCMethod != "" && rt.GRPCService == "":
			problems = append(problems, at+": grpc_method needs grpc_service")
		case rt.PathPrefix != "" && !strings.HasPrefix(rt.PathPrefix, "/"):
			problems = append(problems, at+fmt.Sprintf(": path_prefix %q must start with /", rt.PathPrefix))
		case strings.ToLower(rt.Host) != rt.Host:
			problems = append(problems, at+fmt.Sprintf(": host %q must be lower-case", rt.Host))
		case strings.ContainsAny(rt.GRPCService+rt.GRPCMethod, "/"):
			problems = append(problems, at+": grpc_service and grpc_method are names, without \"/\"")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("mapping: %s", strings.Join(problems, "; "))
	}
	return nil
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
