package athenz

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultSpiffeNamespace is the namespace Athenz puts in trust-domain SPIFFE IDs when
// none is configured (ZTS's SpiffeUriTrustDomain validator and zts-svccert).
const DefaultSpiffeNamespace = "default"

// SpiffeForm says which SPIFFE ID layout a SpiffeIdentity was read from.
type SpiffeForm int

// The SPIFFE ID layouts ParseSpiffeID recognises.
const (
	// SpiffeFormUnknown is the zero value; ParseSpiffeID never returns it without an error.
	SpiffeFormUnknown SpiffeForm = iota
	// SpiffeFormService is Athenz's basic service form spiffe://<domain>/sa/<service>.
	SpiffeFormService
	// SpiffeFormServiceNamespace is spiffe://<td>/ns/<ns>/sa/<domain>.<service>.
	SpiffeFormServiceNamespace
	// SpiffeFormRole is Athenz's basic role form spiffe://<domain>/ra/<role>.
	SpiffeFormRole
	// SpiffeFormRoleNamespace is spiffe://<td>/ns/<domain>/ra/<role>.
	SpiffeFormRoleNamespace
	// SpiffeFormIstio is Istio's spiffe://<td>/ns/<ns>/sa/<service account>, with no dot
	// in the service account. It names a Kubernetes service account, not an Athenz
	// service; a configured mapping says which Athenz service it is.
	SpiffeFormIstio
)

// String returns a short lower-case name for the form, for logs and metrics.
func (f SpiffeForm) String() string {
	switch f {
	case SpiffeFormService:
		return "service"
	case SpiffeFormServiceNamespace:
		return "service-namespace"
	case SpiffeFormRole:
		return "role"
	case SpiffeFormRoleNamespace:
		return "role-namespace"
	case SpiffeFormIstio:
		return "istio"
	}
	return "unknown"
}

// SpiffeIdentity is a SPIFFE ID read by ParseSpiffeID. Which fields are set depends on
// Form: Domain and Service for the service forms, Domain and Role for the role forms,
// ServiceAccount (and neither Domain nor Service) for SpiffeFormIstio. TrustDomain is
// always set; Namespace for the three /ns/ forms (for the role form it equals Domain).
type SpiffeIdentity struct {
	TrustDomain    string
	Namespace      string
	Domain         string
	Service        string
	Role           string
	ServiceAccount string
	Form           SpiffeForm
}

// Principal returns "<domain>.<service>" for the service forms and "" otherwise.
func (s SpiffeIdentity) Principal() string {
	if s.Form != SpiffeFormService && s.Form != SpiffeFormServiceNamespace {
		return ""
	}
	return Principal(s.Domain, s.Service)
}

// SpiffeID returns the SPIFFE ID of an Athenz service: the basic form
// spiffe://<domain>/sa/<service> when trustDomain is empty, otherwise
// spiffe://<trustDomain>/ns/<namespace>/sa/<domain>.<service>, with namespace
// DefaultSpiffeNamespace when empty. It does not validate; the names must be valid and,
// because SPIFFE trust domains are lower case, the basic form needs a lower-case domain.
func SpiffeID(trustDomain, namespace, domain, service string) string {
	if trustDomain == "" {
		return "spiffe://" + domain + "/sa/" + service
	}
	if namespace == "" {
		namespace = DefaultSpiffeNamespace
	}
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + domain + "." + service
}

// RoleSpiffeID returns the SPIFFE ID of a role certificate: spiffe://<domain>/ra/<role>
// when trustDomain is empty, otherwise spiffe://<trustDomain>/ns/<domain>/ra/<role>. It
// does not validate.
func RoleSpiffeID(trustDomain, domain, role string) string {
	if trustDomain == "" {
		return "spiffe://" + domain + "/ra/" + role
	}
	return "spiffe://" + trustDomain + "/ns/" + domain + "/ra/" + role
}

// ParseSpiffeID reads a SPIFFE ID in one of the forms of SpiffeForm. The syntax is
// checked by go-spiffe's spiffeid package (lower-case trust domain, no port, user info,
// query, fragment, percent escapes, empty or dot segments); then domains must be
// DomainNames, services SimpleNames and roles EntityNames. The service-account segment
// decides between the namespaced Athenz form and Istio's: with a dot it is read as
// <domain>.<service>, split at the last dot, without one it is an Istio service account.
//
// Security: the form says how the ID is written, not who vouched for it. Kubernetes
// service account names may contain dots, so an Istio CA can issue an ID that reads as
// an Athenz principal; accept the Athenz forms only from certificates issued by a CA
// trusted for Athenz identities.
func ParseSpiffeID(uri string) (SpiffeIdentity, error) {
	const kind = "SPIFFE ID"
	if len(uri) > maxIdentityLength {
		return SpiffeIdentity{}, identityError(kind, uri, "longer than %d bytes", maxIdentityLength)
	}
	id, err := spiffeid.FromString(uri)
	if err != nil {
		return SpiffeIdentity{}, identityError(kind, uri, "%v", err)
	}
	td := id.TrustDomain().Name()
	var seg []string
	if p := id.Path(); p != "" {
		seg = strings.Split(p[1:], "/")
	}
	s := SpiffeIdentity{TrustDomain: td}
	switch {
	case len(seg) == 2 && seg[0] == "sa":
		s.Form, s.Domain, s.Service = SpiffeFormService, td, seg[1]
	case len(seg) == 2 && seg[0] == "ra":
		s.Form, s.Domain, s.Role = SpiffeFormRole, td, seg[1]
	case len(seg) == 4 && seg[0] == "ns" && seg[2] == "ra":
		s.Form, s.Namespace, s.Domain, s.Role = SpiffeFormRoleNamespace, seg[1], seg[1], seg[3]
	case len(seg) == 4 && seg[0] == "ns" && seg[2] == "sa" && strings.Contains(seg[3], "."):
		s.Form, s.Namespace = SpiffeFormServiceNamespace, seg[1]
		s.Domain, s.Service, _ = SplitPrincipal(seg[3])
	case len(seg) == 4 && seg[0] == "ns" && seg[2] == "sa":
		s.Form, s.Namespace, s.ServiceAccount = SpiffeFormIstio, seg[1], seg[3]
		return s, nil
	default:
		return SpiffeIdentity{}, identityError(kind, uri,
			"not an Athenz or Istio form (/sa/<service>, /ra/<role>, /ns/<ns>/sa/<domain>.<service>, /ns/<domain>/ra/<role>, /ns/<ns>/sa/<service account>)")
	}
	if err := ValidateDomainName(s.Domain); err != nil {
		return SpiffeIdentity{}, identityError(kind, uri, "%v", err)
	}
	if s.Role != "" {
		if err := ValidateEntityName(s.Role); err != nil {
			return SpiffeIdentity{}, identityError(kind, uri, "role: %v", err)
		}
	} else if err := ValidateSimpleName(s.Service); err != nil {
		return SpiffeIdentity{}, identityError(kind, uri, "service: %v", err)
	}
	return s, nil
}
