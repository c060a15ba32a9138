# Envoy ext_authz decisions for opa-envoy-plugin, with the request mapping of the native
# authz server (policy.Mapping.Map) and the decision of data.athenz.authz.
#
# Entry points:
#   data.envoy.authz.allow     boolean (opa-envoy-plugin's default decision path)
#   data.envoy.authz.result    {"allowed", "http_status", "headers",
#                               "response_headers_to_add", "body", "decision"}
#   data.envoy.authz.mapped    the Athenz request the Envoy request maps to
#                              {"principal", "domain", "action", "resource"}, when it maps
#   data.envoy.authz.decision  as data.athenz.authz.decision, or {"allow": false, "reason"}
#                              when the request does not map
#
# Input: the Envoy CheckRequest as opa-envoy-plugin presents it (protobuf JSON names:
# attributes.source.principal, attributes.request.http.{method,path,host},
# attributes.contextExtensions), plus parsed_path and friends, which are not used.
# The mapping configuration is data.athenz.mapping (policy.Mapping).
package envoy.authz

default allow := false

allow if decision.allow

result := {
	"allowed": allow,
	"http_status": status,
	"headers": headers,
	"response_headers_to_add": {},
	"body": body,
	"decision": decision,
}

status := 200 if allow else := 403

headers := {} if allow else := {
	"content-type": "application/json",
	"x-athenz-reason": decision.reason,
}

body := "" if allow else := json.marshal({"allowed": false, "reason": decision.reason})

decision := {"allow": false, "reason": e} if {
	e := mapping_error
} else := d if {
	req := {"principal": mapped.principal, "action": mapped.action, "resource": mapped.resource}
	d := data.athenz.authz.decision with input as req
}

mapping_error := "unknown_principal" if {
	not principal
} else := "invalid_request" if {
	not domain
}

mapped := {
	"principal": principal,
	"domain": domain,
	"action": action,
	"resource": resource,
}

# --- configuration and request fields -------------------------------------------------

config := m if {
	m := data.athenz.mapping
	is_object(m)
} else := {}

http_field(name) := v if {
	v := input.attributes.request.http[name]
	is_string(v)
} else := ""

source := s if {
	s := input.attributes.source.principal
	is_string(s)
} else := ""

extensions := e if {
	e := input.attributes.contextExtensions
	is_object(e)
} else := e if {
	e := input.attributes.context_extensions
	is_object(e)
} else := {}

# extension(key) is a non-empty context extension.
extension(key) := v if {
	v := extensions[key]
	is_string(v)
	v != ""
}

# configured(table, key) is a non-empty string entry of a mapping table.
configured(table, key) := v if {
	v := config[table][key]
	is_string(v)
	v != ""
}

# --- principal -------------------------------------------------------------------------

principal := p if {
	p := configured("principals", source)
} else := p if {
	p := spiffe_principal
}

spiffe_parts := split(substring(source, 9, -1), "/") if startswith(source, "spiffe://")

# spiffe://<domain>/sa/<service>
spiffe_principal := concat(".", [parts[0], parts[2]]) if {
	parts := spiffe_parts
	count(parts) == 3
	parts[0] != ""
	parts[1] == "sa"
	parts[2] != ""
}

# spiffe://<trust domain>/ns/<namespace>/sa/<domain.service>, only in a trust domain of
# athenz_trust_domains (a CA that issues Athenz identities), and a valid principal.
spiffe_principal := parts[4] if {
	parts := spiffe_parts
	istio_form(parts)
	athenz_form(parts)
	athenz_domain(parts[4])
}

athenz_form(parts) if {
	contains(parts[4], ".")
	some td in config.athenz_trust_domains
	td == parts[0]
}

# spiffe://<trust domain>/ns/<namespace>/sa/<account>, mapped by the Istio mapping
# (policy.Mapping.IstioService): the rule that matches decides, and its result must be a
# valid domain and simple service name.
spiffe_principal := concat(".", [d, s]) if {
	parts := spiffe_parts
	istio_form(parts)
	not athenz_form(parts)
	k8s_label(parts[2])
	k8s_name(parts[4])
	mapped_pair := istio_raw(parts[2], parts[4])
	d := lower(mapped_pair[0])
	s := lower(mapped_pair[1])
	athenz_domain(d)
	athenz_simple(s)
}

istio := m if {
	m := config.istio
	is_object(m)
} else := {}

istio_entries := [e | some e in istio.entries; is_object(e)]

istio_exact(ns, sa) := [e | some e in istio_entries; e.namespace == ns; e.service_account == sa]

istio_wildcard(ns) := [e | some e in istio_entries; e.namespace == ns; e.service_account == "*"]

# The first rule that matches, before validation: an exact entry, the namespaces table, a
# wildcard entry (its service, else the account), the naming rule.
istio_raw(ns, sa) := [e.domain, entry_service(e, sa)] if {
	e := istio_exact(ns, sa)[0]
} else := [d, sa] if {
	d := configured("namespaces", ns)
} else := [e.domain, entry_service(e, sa)] if {
	e := istio_wildcard(ns)[0]
} else := [d, sa] if {
	r := istio.rule
	is_object(r)
	d := rule_domain(r, ns)
	not system_domain(lower(d))
}

entry_service(e, sa) := s if {
	s := e.service
	is_string(s)
	s != ""
} else := sa

# A missing key is "" (object.get: a function given an undefined argument is undefined).
rule_domain(r, ns) := concat("", [string_or_empty(object.get(r, "domain_prefix", "")), replace(ns, sep, ".")]) if {
	sep := string_or_empty(object.get(r, "separator", ""))
	sep != ""
} else := concat("", [string_or_empty(object.get(r, "domain_prefix", "")), ns])

string_or_empty(v) := v if is_string(v) else := ""

# Athenz's system domain and the domains of people (athenz.IstioNamingRule): the naming
# rule never maps into them.
reserved_domains := {"sys", "user", "home"}

system_domain(d) if reserved_domains[d]

system_domain(d) if {
	some r in reserved_domains
	startswith(d, concat("", [r, "."]))
}

# Kubernetes namespace names: RFC 1123 labels.
k8s_label(s) if {
	count(s) <= 63
	regex.match(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, s)
}

# Kubernetes service account names: RFC 1123 subdomains (labels joined by dots).
k8s_name(s) if {
	count(s) <= 253
	every label in split(s, ".") {
		k8s_label(label)
	}
}

# Athenz DomainName and SimpleName (athenz-compat.md), at most 1024 bytes.
athenz_domain(s) if {
	count(s) <= 1024
	regex.match(`^([a-zA-Z0-9_][a-zA-Z0-9_-]*\.)*[a-zA-Z0-9_][a-zA-Z0-9_-]*$`, s)
}

athenz_simple(s) if {
	count(s) <= 1024
	regex.match(`^[a-zA-Z0-9_][a-zA-Z0-9_-]*$`, s)
}

istio_form(parts) if {
	count(parts) == 5
	parts[0] != ""
	parts[1] == "ns"
	parts[2] != ""
	parts[3] == "sa"
	parts[4] != ""
}

# --- domain, action, resource ---------------------------------------------------------

host := lower(http_field("host"))

domain := d if {
	d := extension("athenz.domain")
} else := d if {
	d := route_set("domain")
} else := d if {
	d := configured("hosts", host)
} else := d if {
	d := configured("hosts", regex.replace(host, `:[0-9]+$`, ""))
} else := d if {
	d := config.default_domain
	is_string(d)
	d != ""
}

action := a if {
	a := extension("athenz.action")
} else := a if {
	a := route_set("action")
} else := lower(http_field("method"))

resource := concat(":", [domain, entity])

entity := e if {
	e := extension("athenz.resource")
} else := e if {
	e := route_set("resource")
} else := path_no_query

path_no_query := p if {
	path := http_field("path")
	i := indexof(path, "?")
	i >= 0
	p := substring(path, 0, i)
} else := http_field("path")

# --- route rules (policy.Mapping.Routes): the first matching rule ------------------------

routes := r if {
	r := config.routes
	is_array(r)
} else := []

# rfield(r, k) is a route's field, "" when absent or not a string.
rfield(r, k) := v if {
	v := r[k]
	is_string(v)
} else := ""

route_index := min({i | some i; route_matches(routes[i])})

route := routes[route_index]

# route_set(k) is what the matching route sets for k, when it sets something.
route_set(k) := v if {
	v := rfield(route, k)
	v != ""
}

route_matches(r) if {
	route_host_ok(r)
	route_prefix_ok(r)
	route_grpc_ok(r)
}

route_host_ok(r) if rfield(r, "host") == ""

route_host_ok(r) if {
	h := rfield(r, "host")
	h != ""
	h == host
}

route_host_ok(r) if {
	h := rfield(r, "host")
	h != ""
	h == regex.replace(host, `:[0-9]+$`, "")
}

route_prefix_ok(r) if rfield(r, "path_prefix") == ""

route_prefix_ok(r) if {
	p := rfield(r, "path_prefix")
	p != ""
	startswith(path_no_query, p)
}

grpc_parts := split(substring(path_no_query, 1, -1), "/") if startswith(path_no_query, "/")

route_grpc_ok(r) if rfield(r, "grpc_service") == ""

route_grpc_ok(r) if {
	s := rfield(r, "grpc_service")
	s != ""
	count(grpc_parts) == 2
	grpc_parts[0] == s
	grpc_method_ok(r)
}

grpc_method_ok(r) if rfield(r, "grpc_method") == ""

grpc_method_ok(r) if {
	m := rfield(r, "grpc_method")
	m != ""
	grpc_parts[1] == m
}
