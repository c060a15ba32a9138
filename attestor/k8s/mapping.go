package k8s

import (
	"errors"
	"fmt"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Mapping says which Athenz service a Kubernetes namespace and service account are. It
// is shared by everything that meets Kubernetes identities (this attestor, and the Istio
// SPIFFE IDs spiffe://<td>/ns/<ns>/sa/<sa> met elsewhere), so they all agree. The zero
// Mapping maps nothing.
//
// Map applies, in order, the first rule that matches:
//
//  1. an entry with exactly this namespace and service account;
//  2. an entry with this namespace and service account "*": its Domain, and its Service
//     or, when that is empty, the service account's name;
//  3. the naming rule, when configured: domain = DomainPrefix + the namespace with every
//     Separator replaced by ".", service = the service account's name.
//
// The result must be a valid Athenz domain and simple service name, or nothing maps. The
// naming rule never produces "sys" or a domain under "sys." (Athenz's system domains);
// only an explicit entry can. A mapping is a naming convention, not a grant: the issuer
// still requires the domain's policy to let the provider launch the service.
//
// A Mapping is read-only after Validate and safe for concurrent use.
type Mapping struct {
	// Entries are explicit mappings; they win over Rule.
	Entries []MappingEntry `yaml:"entries" json:"entries"`
	// Rule, when set, maps every namespace and service account no entry matches.
	Rule *NamingRule `yaml:"rule" json:"rule"`
}

// MappingEntry maps one namespace and service account (or all service accounts of a
// namespace) to an Athenz service.
type MappingEntry struct {
	// Namespace is the Kubernetes namespace. Required.
	Namespace string `yaml:"namespace" json:"namespace"`
	// ServiceAccount is the service account name, or "*" for every service account of
	// the namespace. Required.
	ServiceAccount string `yaml:"service_account" json:"service_account"`
	// Domain is the Athenz domain. Required.
	Domain string `yaml:"domain" json:"domain"`
	// Service is the Athenz service. Required unless ServiceAccount is "*", where empty
	// means "the service account's name".
	Service string `yaml:"service" json:"service"`
}

// NamingRule derives the Athenz service from the names: domain = DomainPrefix +
// namespace (with Separator read as "."), service = service account name. Kubernetes
// namespaces cannot contain dots, hence Separator; with Separator "--", namespace
// "sports--prod" is domain "sports.prod" (plus the prefix).
type NamingRule struct {
	// DomainPrefix is put before the namespace, e.g. "k8s.prod." for domains under
	// k8s.prod. Empty: the namespace alone is the domain.
	DomainPrefix string `yaml:"domain_prefix" json:"domain_prefix"`
	// Separator, when set, is the string in a namespace that stands for "." in the
	// domain; "--" is a good choice. Empty: namespaces map without dots.
	Separator string `yaml:"separator" json:"separator"`
}

// Map returns the Athenz domain and service of a namespace and service account, in lower
// case, and false when nothing maps them (see Mapping).
func (m *Mapping) Map(namespace, serviceAccount string) (domain, service string, ok bool) {
	if m == nil || !isDNSLabel(namespace) || !isDNSSubdomain(serviceAccount) {
		return "", "", false
	}
	var wildcard *MappingEntry
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Namespace != namespace {
			continue
		}
		if e.ServiceAccount == serviceAccount {
			return valid(e.Domain, e.Service)
		}
		if e.ServiceAccount == "*" && wildcard == nil {
			wildcard = e
		}
	}
	if wildcard != nil {
		service := wildcard.Service
		if service == "" {
			service = serviceAccount
		}
		return valid(wildcard.Domain, service)
	}
	if m.Rule == nil {
		return "", "", false
	}
	ns := namespace
	if m.Rule.Separator != "" {
		ns = strings.ReplaceAll(ns, m.Rule.Separator, ".")
	}
	domain = strings.ToLower(m.Rule.DomainPrefix + ns)
	if domain == "sys" || strings.HasPrefix(domain, "sys.") {
		return "", "", false
	}
	return valid(domain, serviceAccount)
}

func valid(domain, service string) (string, string, bool) {
	domain, service = strings.ToLower(domain), strings.ToLower(service)
	if !athenz.IsDomainName(domain) || !athenz.IsSimpleName(service) {
		return "", "", false
	}
	return domain, service, true
}

// Validate reports every problem of the mapping at once: entries with invalid or missing
// names, two entries for the same namespace and service account, a prefix that cannot
// start a domain name, a separator a namespace cannot contain.
func (m *Mapping) Validate() error {
	if m == nil {
		return nil
	}
	var errs []error
	seen := map[[2]string]bool{}
	for i, e := range m.Entries {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("mapping entry %d (%s/%s): %s", i, e.Namespace, e.ServiceAccount, fmt.Sprintf(format, args...)))
		}
		if !isDNSLabel(e.Namespace) {
			bad("namespace %q is not a Kubernetes namespace name (a DNS label)", e.Namespace)
		}
		if e.ServiceAccount != "*" && !isDNSSubdomain(e.ServiceAccount) {
			bad("service account %q is not a Kubernetes name (a DNS subdomain) or \"*\"", e.ServiceAccount)
		}
		if err := athenz.ValidateDomainName(e.Domain); err != nil {
			bad("%v", err)
		}
		switch {
		case e.Service == "" && e.ServiceAccount != "*":
			bad("service is required unless the service account is \"*\"")
		case e.Service != "":
			if err := athenz.ValidateSimpleName(e.Service); err != nil {
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
		if r.DomainPrefix != "" && !athenz.IsDomainName(r.DomainPrefix+"x") {
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

// isDNSLabel reports whether s is an RFC 1123 label, as Kubernetes namespace names are:
// 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit.
func isDNSLabel(s string) bool {
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

// isDNSSubdomain reports whether s is an RFC 1123 subdomain, as Kubernetes object names
// such as service accounts and pods are: dot-separated labels, at most 253 bytes.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}
