package k8s

import "github.com/athenz-mesh/athenz-mesh/athenz"

// Mapping says which Athenz service a Kubernetes namespace and service account are. It is
// athenz.IstioMapping, the one mapping shared by this attestor, the issuer's Istio CA API
// and the authz server's reading of Istio SPIFFE IDs, so they all agree; see there for the
// rules and the YAML shape (entries and rule). The zero Mapping maps nothing.
type Mapping = athenz.IstioMapping

// MappingEntry maps one namespace and service account (or all service accounts of a
// namespace) to an Athenz service: athenz.IstioMappingEntry.
type MappingEntry = athenz.IstioMappingEntry

// NamingRule derives the Athenz service from the names: athenz.IstioNamingRule.
type NamingRule = athenz.IstioNamingRule

// isDNSLabel reports whether s can be a Kubernetes namespace name (an RFC 1123 label).
func isDNSLabel(s string) bool { return athenz.IsKubernetesNamespace(s) }

// isDNSSubdomain reports whether s can be a Kubernetes object name, such as a service
// account or pod name (an RFC 1123 subdomain).
func isDNSSubdomain(s string) bool { return athenz.IsKubernetesName(s) }
