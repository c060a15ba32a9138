package athenz

import (
	"errors"
	"fmt"
	"strings"
)

// IstioMapping says which Athenz service a Kubernetes namespace and service account are:
// the service behind an Istio identity spiffe://<trust domain>/ns/<ns>/sa/<sa> and behind a
// Kubernetes service-account token. It is the one mapping of the project: the Kubernetes
// attestor, the issuer's Istio CA API (which puts the mapped principal in the certificate
// CN) and the authz server (which reads the Istio SPIFFE ID of a peer) all use it, with the
// same YAML and JSON shape, so they agree on who a workload is. The zero IstioMapping maps
// nothing.
//
// Map applies, in order, the first rule that matches:
//
//  1. an entry with exactly this namespace and service account;
//  2. an entry with this namespace and service account "*": its Domain, and its Service
//     or, when that is empty, the service account's name;
//  3. the naming rule, when configured: domain = DomainPrefix + the namespace with every
//     Separator replaced by ".", service = the service account's name.
//
// The matching rule alone decides: when its result is not a valid Athenz domain and simple
// service name, nothing maps (a later rule is not tried). Results are in lower case. The
// naming rule never produces "sys" or a domain under "sys." (Athenz's system domains);
// only an explicit entry can. A mapping is a naming convention, not a grant: the issuer
// still requires the domain's policy to let the provider launch the service.
//
// An IstioMapping is read-only after Validate and safe for concurrent use. Lookups scan the
// entries, which suits the tens of entries a naming rule leaves to list.
type IstioMapping struct {
	// Entries are explicit mappings; they win over Rule.
	Entries []IstioMappingEntry `yaml:"entries" json:"entries,omitempty"`
	// Rule, when set, maps every namespace and service account no entry matches.
	Rule *IstioNamingRule `yaml:"rule" json:"rule,omitempty"`
}

// IstioMappingEntry maps one namespace and service account (or all service accounts of a
// namespace) to an Athenz service.
type IstioMappingEntry struct {
	// Namespace is the Kubernetes namespace. Required.
	Namespace string `yaml:"namespace" json:"namespace"`
	// ServiceAccount is the service account name, or "*" for every service account of
	// the namespace. Required.
	ServiceAccount string `yaml:"service_account" json:"service_account"`
	// Domain is the Athenz domain. Required.
	Domain string `yaml:"domain" json:"domain"`
	// Service is the Athenz service. Required unless ServiceAccount is "*", where empty
	// means "the service account's name".
	Service string `yaml:"service" json:"service,omitempty"`
}

// IstioNamingRule derives the Athenz service from the names: domain = DomainPrefix +
// namespace (with Separator read as "."), service = service account name. Kubernetes
// namespaces cannot contain dots, hence Separator; with Separator "--", namespace
// "sports--prod" is domain "sports.prod" (plus the prefix).
type IstioNamingRule struct {
	// DomainPrefix is put before the namespace, e.g. "k8s.prod." for domains under
	// k8s.prod. Empty: the namespace alone is the domain.
	DomainPrefix string `yaml:"domain_prefix" json:"domain_prefix,omitempty"`
	// Separator, when set, is the string in a namespace that stands for "." in the
	// domain; "--" is a good choice. Empty: namespaces map without dots.
	Separator string `yaml:"separator" json:"separator,omitempty"`
}

// Map returns the Athenz domain and service of a namespace and service account, in lower
// case, and false when nothing maps them (see IstioMapping). m may be nil.
func (m *IstioMapping) Map(namespace, serviceAccount string) (domain, service string, ok bool) {
	if m == nil || !IsKubernetesNamespace(namespace) || !IsKubernetesName(serviceAccount) {
		return "", "", false
	}
	if e := m.Entry(namespace, serviceAccount); e != nil {
		return e.Map(serviceAccount)
	}
	return m.Rule.Map(namespace, serviceAccount)
}

// Entry returns the entry that maps a namespace and service account: the one naming both
// exactly, else the first naming the namespace with service account "*", else nil. It
// does not check the names; Map does. m may be nil.
func (m *IstioMapping) Entry(namespace, serviceAccount string) *IstioMappingEntry {
	if m == nil {
		return nil
	}
	var wildcard *IstioMappingEntry
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Namespace != namespace {
			continue
		}
		if e.ServiceAccount == serviceAccount {
			return e
		}
		if e.ServiceAccount == "*" && wildcard == nil {
			wildcard = e
		}
	}
	return wildcard
}

// Map applies the entry to a service account of its namespace: its Domain and Service, or
// the service account's name when Service is empty. The result is lower-cased and must be
// a valid domain and simple name, or ok is false.
func (e *IstioMappingEntry) Map(serviceAccount string) (domain, service string, ok bool) {
	service = e.Service
	if service == "" {
		service = serviceAccount
	}
	return validMapped(e.Domain, service)
}

// Map applies the naming rule to a namespace and service account. r may be nil, which
// maps nothing.
func (r *IstioNamingRule) Map(namespace, serviceAccount string) (domain, service string, ok bool) {
	if r == nil {
		return "", "", false
	}
	ns := namespace
	if r.Separator != "" {
		ns = strings.ReplaceAll(ns, r.Separator, ".")
	}
	domain = strings.ToLower(r.DomainPrefix + ns)
	if reservedDomain(domain) {
		return "", "", false
	}
	return validMapped(domain, serviceAccount)
}

// reservedDomains are Athenz's system domain and the domains of people: a naming rule
// never maps into them, or whoever may create a namespace "user" (or "home--alice" with
// separator "--") and a service account "alice" would be the person user.alice. An
// explicit entry may still name them.
var reservedDomains = []string{"sys", "user", "home"}

func reservedDomain(domain string) bool {
	for _, r := range reservedDomains {
		if domain == r || strings.HasPrefix(domain, r+".") {
			return true
		}
	}
	return false
}

func validMapped(domain, service string) (string, string, bool) {
	domain, service = strings.ToLower(domain), strings.ToLower(service)
	if !IsDomainName(domain) || !IsSimpleName(service) {
		return "", "", false
	}
	return domain, service, true
}

// Validate reports every problem of the mapping at once: entries with invalid or missing
// names, two entries for the same namespace and service account, a prefix that cannot
// start a domain name, a separator a namespace cannot contain. m may be nil.
func (m *IstioMapping) Validate() error {
	if m == nil {
		return nil
	}
	var errs []error
	seen := map[[2]string]bool{}
	for i, e := range m.Entries {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("mapping entry %d (%s/%s): %s", i, e.Namespace, e.ServiceAccount, fmt.Sprintf(format, args...)))
		}
		if !IsKubernetesNamespace(e.Namespace) {
			bad("namespace %q is not a Kubernetes namespace name (a DNS label)", e.Namespace)
		}
		if e.ServiceAccount != "*" && !IsKubernetesName(e.ServiceAccount) {
			bad("service account %q is not a Kubernetes name (a DNS subdomain) or \"*\"", e.ServiceAccount)
		}
		if err := ValidateDomainName(e.Domain); err != nil {
			bad("%v", err)
		}
		switch {
		case e.Service == "" && e.ServiceAccount != "*":
			bad("service is required unless the service account is \"*\"")
		case e.Service != "":
			if err := ValidateSimpleName(e.Service); err != nil {
				bad("service: %v", err)
			}
		}
		key := [2]string{e.Namespace, e.ServiceAccount}
		if seen[key] {
			bad("appears twice")
		}
		seen[key] = true
	}
	if r := m.Rule; r != nil {
		if r.DomainPrefix != "" && !IsDomainName(r.DomainPrefix+"x") {
			errs = append(errs, fmt.Errorf("mapping rule: domain prefix %q cannot start a domain name (want e.g. \"k8s.prod.\")", r.DomainPrefix))
		}
		if r.Separator != "" && !isSeparator(r.Separator) {
			errs = append(errs, fmt.Errorf("mapping rule: separator %q must be made of characters a namespace can hold (a-z, 0-9, '-'), e.g. \"--\"", r.Separator))
		}
	}
	return errors.Join(errs...)
}

func isSeparator(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IsKubernetesNamespace reports whether s is an RFC 1123 label, as Kubernetes namespace
// names are: 1 to 63 lower-case letters, digits and '-', starting and ending with a
// letter or digit.
func IsKubernetesNamespace(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IsKubernetesName reports whether s is an RFC 1123 subdomain, as the names of Kubernetes
// objects such as service accounts and pods are: dot-separated labels, at most 253 bytes.
func IsKubernetesName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !IsKubernetesNamespace(label) {
			return false
		}
	}
	return true
}
