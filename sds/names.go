package sds

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Resource names the SDS server understands (docs/agent-sds.md lists them for users).
const (
	// NameDefault is the workload's own certificate chain and key, as Istio's proxies
	// request it.
	NameDefault = "default"
	// NameRootCA is the validation context (trust bundle), as Istio's proxies request
	// it.
	NameRootCA = "ROOTCA"
)

// resourceKind is what a resource name asks for.
type resourceKind uint8

const (
	kindUnknown resourceKind = iota
	kindDefault              // "default"
	kindRootCA               // "ROOTCA"
	kindSIACA                // spiffe://<td>/ns/athenz/ca/default
	kindService              // spiffe://<domain>/sa/<service>, spiffe://<td>/ns/<ns>/sa/<domain>.<service>
	kindIstio                // spiffe://<td>/ns/<ns>/sa/<service account>: matched against the certificate's SPIFFE ID
	kindRole                 // athenz://role/<domain>/<role>, spiffe://<domain>/ra/<role>, spiffe://<td>/ns/<domain>/ra/<role>
)

// resourceName is a parsed resource name.
type resourceName struct {
	kind resourceKind
	// principal for kindService; roleDomain and role for kindRole; trustDomain for
	// kindSIACA.
	principal, roleDomain, role, trustDomain string
	// why is set for kindUnknown.
	why string
}

func (k resourceKind) isBundle() bool { return k == kindRootCA || k == kindSIACA }

// parseResourceName classifies a resource name. It never fails: names it cannot serve
// come back as kindUnknown with the reason.
func parseResourceName(name string) resourceName {
	switch {
	case name == NameDefault:
		return resourceName{kind: kindDefault}
	case name == NameRootCA:
		return resourceName{kind: kindRootCA}
	case strings.HasPrefix(name, "athenz://role/"):
		d, r, err := athenz.ParseRoleURI(name)
		if err != nil {
			return resourceName{why: err.Error()}
		}
		return resourceName{kind: kindRole, roleDomain: d, role: r}
	case strings.HasPrefix(name, "spiffe://"):
		return parseSpiffeName(name)
	}
	return resourceName{why: `not "default", "ROOTCA", a SPIFFE ID or athenz://role/<domain>/<role>`}
}

func parseSpiffeName(name string) resourceName {
	if id, err := spiffeid.FromString(name); err == nil && strings.HasPrefix(id.Path(), "/ns/") {
		if seg := strings.Split(id.Path()[1:], "/"); len(seg) == 4 && seg[2] == "ca" {
			if seg[1] != "athenz" || seg[3] != "default" {
				return resourceName{why: "the only CA bundle served is spiffe://<trust domain>/ns/athenz/ca/default"}
			}
			return resourceName{kind: kindSIACA, trustDomain: id.TrustDomain().Name()}
		}
	}
	s, err := athenz.ParseSpiffeID(name)
	if err != nil {
		return resourceName{why: err.Error()}
	}
	switch s.Form {
	case athenz.SpiffeFormService, athenz.SpiffeFormServiceNamespace:
		return resourceName{kind: kindService, principal: s.Principal()}
	case athenz.SpiffeFormRole, athenz.SpiffeFormRoleNamespace:
		return resourceName{kind: kindRole, roleDomain: s.Domain, role: s.Role}
	case athenz.SpiffeFormIstio:
		return resourceName{kind: kindIstio}
	}
	return resourceName{why: "unsupported SPIFFE ID form " + s.Form.String()}
}
