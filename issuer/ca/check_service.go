package ca

import (
	"crypto/x509"
	"net"
	"net/url"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// ServiceIdentity is what the issuer has established about a workload before looking at
// its CSR: the attested service, the instance and the names it may use. CheckServiceCSR
// trusts every field (they come from attestation, configuration and the domain data,
// never from the CSR) and validates their syntax only.
type ServiceIdentity struct {
	// Domain and Service name the Athenz service; the principal is "<Domain>.<Service>".
	// Required. Compared ignoring case and issued in lower case.
	Domain  string
	Service string
	// Provider is the attesting provider service, e.g. "sys.auth.zts" or
	// "athenz.k8s.cluster1". Required when InstanceID is set.
	Provider string
	// InstanceID is the attested instance (pod UID, EC2 instance id, ...). When set, the
	// CSR must carry athenz://instanceid/<Provider>/<InstanceID>, and may carry the legacy
	// DNS form <InstanceID>.instanceid.athenz.<suffix>. Empty: the CSR may carry neither.
	// Compared exactly.
	InstanceID string
	// DNSSuffixes are the suffixes of the service DNS names, e.g. "athenz.cloud" (a
	// leading dot is ignored). Empty: no service DNS name is allowed, only Hostnames.
	DNSSuffixes []string
	// AllowWildcardDNS also allows *.<service>.<domain-dashed>.<suffix> (SIA's
	// sandns_wildcard). Default false.
	AllowWildcardDNS bool
	// Hostnames are further DNS names the service may use, exactly (no wildcards): the
	// registered hostname and cnames, or Kubernetes pod names the attestor vouched for.
	// They are also the names allowed in athenz://hostname/<h> URIs.
	Hostnames []string
	// SpiffeTrustDomain, when set, selects the SPIFFE form
	// spiffe://<trust domain>/ns/<Namespace>/sa/<domain>.<service> (unless SpiffeForm says
	// otherwise). Empty: the Athenz basic form spiffe://<domain>/sa/<service>.
	SpiffeTrustDomain string
	// Namespace is the SPIFFE namespace of the trust-domain form. Empty:
	// athenz.DefaultSpiffeNamespace ("default"), as ZTS and zts-svccert use.
	Namespace string
	// SpiffeForm forces the SPIFFE form: athenz.SpiffeFormService (basic) or
	// athenz.SpiffeFormServiceNamespace (trust domain; needs SpiffeTrustDomain). The zero
	// value chooses by SpiffeTrustDomain as described there. Other forms are invalid.
	SpiffeForm athenz.SpiffeForm
	// SpiffeID, when set, is the exact SPIFFE ID allowed instead of the computed one, for
	// workloads that keep another form (Istio's spiffe://<td>/ns/<ns>/sa/<account>, mapped
	// to this service by the issuer's configuration). It must parse with
	// athenz.ParseSpiffeID and, if it is an Athenz service form, name this service.
	SpiffeID string
	// AddSpiffeID adds the SPIFFE ID to the certificate when the CSR has none. Default
	// false: the certificate carries a SPIFFE ID only when the CSR asked for it.
	AddSpiffeID bool
	// AllowEmptyCN accepts a CSR with no subject CN (istio-agent sends none); the
	// certificate still gets CN <domain>.<service>. Default false: the CN is required.
	AllowEmptyCN bool
	// AllowIPs are the IP addresses the CSR may put in IP SANs (the client's address, a
	// pod IP). Empty: IP SANs are refused.
	AllowIPs []net.IP
	// Subject says which O, OU and C values pass through. Zero: only the CN is issued.
	Subject SubjectPolicy
}

// serviceRules is a ServiceIdentity validated and turned into the exact strings allowed.
type serviceRules struct {
	principal   string
	dns         map[string]bool // allowed DNS SANs, lower case
	dnsWant     string          // the allowed DNS names, for messages
	spiffe      string
	instanceURI string // "" when no instance id was attested
	provider    string
	instanceID  string
	hostnames   map[string]bool
}

func (id ServiceIdentity) rules() (*serviceRules, error) {
	domain, service := strings.ToLower(id.Domain), strings.ToLower(id.Service)
	if err := athenz.ValidateDomainName(domain); err != nil {
		return nil, identityError("%v", err)
	}
	if err := athenz.ValidateSimpleName(service); err != nil {
		return nil, identityError("service: %v", err)
	}
	r := &serviceRules{principal: athenz.Principal(domain, service), dns: map[string]bool{}, hostnames: map[string]bool{}}
	suffixes, err := normalizeSuffixes(id.DNSSuffixes)
	if err != nil {
		return nil, err
	}
	var want []string
	add := func(name string) {
		if !r.dns[name] {
			r.dns[name] = true
			want = append(want, name)
		}
	}
	for _, sfx := range suffixes {
		add(athenz.ServiceDNSName(domain, service, sfx))
		if id.AllowWildcardDNS {
			add("*." + athenz.ServiceDNSName(domain, service, sfx))
		}
	}
	if id.InstanceID != "" {
		r.provider, r.instanceID = strings.ToLower(id.Provider), id.InstanceID
		r.instanceURI = athenz.InstanceIDURI(r.provider, r.instanceID)
		if _, _, err := athenz.ParseInstanceIDURI(r.instanceURI); err != nil {
			return nil, identityError("instance id or provider: %v", err)
		}
		if _, ok := athenz.ParseInstanceIDDNSName(athenz.InstanceIDDNSName(r.instanceID, "x")); ok {
			for _, sfx := range suffixes {
				add(strings.ToLower(athenz.InstanceIDDNSName(r.instanceID, sfx)))
			}
		}
	}
	for _, h := range id.Hostnames {
		n, err := normalizeDNSName("hostname", h)
		if err != nil {
			return nil, err
		}
		r.hostnames[n] = true
		add(n)
	}
	r.dnsWant = quoteList(want)
	if r.spiffe, err = serviceSpiffeID(id, domain, service); err != nil {
		return nil, err
	}
	return r, nil
}

// serviceSpiffeID returns the one SPIFFE ID the identity may carry.
func serviceSpiffeID(id ServiceIdentity, domain, service string) (string, error) {
	if id.SpiffeID != "" {
		s, err := athenz.ParseSpiffeID(id.SpiffeID)
		if err != nil {
			return "", identityError("SPIFFE ID: %v", err)
		}
		if p := s.Principal(); s.Form != athenz.SpiffeFormIstio && p != athenz.Principal(domain, service) {
			return "", identityError("SPIFFE ID %q does not name %s", id.SpiffeID, athenz.Principal(domain, service))
		}
		return id.SpiffeID, nil
	}
	td := strings.ToLower(id.SpiffeTrustDomain)
	form := id.SpiffeForm
	if form == athenz.SpiffeFormUnknown {
		form = athenz.SpiffeFormService
		if td != "" {
			form = athenz.SpiffeFormServiceNamespace
		}
	}
	var uri string
	switch form {
	case athenz.SpiffeFormService:
		uri = athenz.SpiffeID("", "", domain, service)
	case athenz.SpiffeFormServiceNamespace:
		if td == "" {
			return "", identityError("SPIFFE form %s needs a trust domain", form)
		}
		uri = athenz.SpiffeID(td, id.Namespace, domain, service)
	default:
		return "", identityError("SPIFFE form %s is not a service form", form)
	}
	if _, err := athenz.ParseSpiffeID(uri); err != nil {
		return "", identityError("SPIFFE ID: %v", err)
	}
	return uri, nil
}

// CheckServiceCSR compares a service certificate CSR with the identity the issuer has
// established and returns the request to sign: exactly the checked names, in canonical
// (lower-case) form, and the CSR's public key. Validity fields are left zero for the
// caller to set.
//
// The CSR must come from ParseCSR, which verifies its signature; this function re-applies
// ParseCSR's other rules but not the signature check. The rules (athenz-compat.md §2):
//
//   - CN: exactly one, equal to "<domain>.<service>" ignoring case (or none, with
//     AllowEmptyCN); issued in lower case.
//   - DNS SANs: each one <service>.<domain-dashed>.<suffix> for a suffix in DNSSuffixes,
//     *.<service>.<domain-dashed>.<suffix> with AllowWildcardDNS,
//     <InstanceID>.instanceid.athenz.<suffix>, or one of Hostnames; nothing else.
//   - URI SANs: at most one spiffe:// URI, equal to the identity's SPIFFE ID (added with
//     AddSpiffeID when missing); athenz://instanceid/<provider>/<id> matching Provider and
//     InstanceID, at most once, required when InstanceID is set and refused when it is
//     not; athenz://hostname/<h> for h in Hostnames; no other URI.
//   - email SANs: refused (they name role certificate holders).
//   - IP SANs: only those in AllowIPs.
//   - O, OU, C: as Subject says; every other subject attribute is dropped.
//
// Names are compared ignoring ASCII case, except the instance id, and duplicates are
// issued once. Refusals are *CSRError; an invalid identity gives an error wrapping
// ErrBadIdentity.
func CheckServiceCSR(csr *x509.CertificateRequest, id ServiceIdentity) (IssueRequest, error) {
	r, err := id.rules()
	if err != nil {
		return IssueRequest{}, err
	}
	if err := checkRequestShape(csr); err != nil {
		return IssueRequest{}, err
	}
	req := IssueRequest{PublicKey: csr.PublicKey, CommonName: r.principal}
	if err := checkCommonName(csr, r.principal, id.AllowEmptyCN); err != nil {
		return IssueRequest{}, err
	}
	if err := id.Subject.apply(csr, &req); err != nil {
		return IssueRequest{}, err
	}
	names, err := readSANs(csr)
	if err != nil {
		return IssueRequest{}, err
	}
	for _, name := range names.dns {
		n := strings.ToLower(name)
		if !r.dns[n] {
			return IssueRequest{}, r.dnsRefusal(name)
		}
		req.DNSNames = appendUnique(req.DNSNames, n)
	}
	if req.URIs, err = r.checkURIs(names.uris, id.AddSpiffeID); err != nil {
		return IssueRequest{}, err
	}
	if len(names.emails) > 0 {
		return IssueRequest{}, refuse(FieldEmail, names.emails[0], "email SANs are not allowed in a service certificate (they name the holder of a role certificate)")
	}
	if req.IPAddresses, err = checkIPs(names.ips, id.AllowIPs); err != nil {
		return IssueRequest{}, err
	}
	return req, nil
}

func (r *serviceRules) dnsRefusal(name string) error {
	if len(r.dns) == 0 {
		return refuse(FieldDNSName, name, "no DNS name is allowed for %s (no DNS suffix or hostname configured)", r.principal)
	}
	return refuse(FieldDNSName, name, "not a name of %s; want %s", r.principal, r.dnsWant)
}

// checkURIs checks a service CSR's URI SANs and returns the URIs to issue: the SPIFFE ID
// first (as SIA orders them), then the instance id, then hostnames.
func (r *serviceRules) checkURIs(uris []string, addSpiffe bool) ([]*url.URL, error) {
	var spiffe, instance string
	var hosts []string
	for _, u := range uris {
		lower := strings.ToLower(u)
		switch {
		case strings.HasPrefix(lower, "spiffe:"):
			if spiffe != "" {
				return nil, refuse(FieldURI, u, "a second SPIFFE ID; a certificate carries at most one, %q", r.spiffe)
			}
			if !equalFoldASCII(u, r.spiffe) {
				return nil, refuse(FieldURI, u, "not the SPIFFE ID of %s; want %q", r.principal, r.spiffe)
			}
			spiffe = r.spiffe
		case strings.HasPrefix(lower, "athenz://instanceid/"):
			if r.instanceURI == "" {
				return nil, refuse(FieldURI, u, "no instance id was attested for this request, so the CSR may not name one")
			}
			if instance != "" {
				return nil, refuse(FieldURI, u, "a second instance id URI; want exactly one, %q", r.instanceURI)
			}
			if err := r.checkInstanceURI(u); err != nil {
				return nil, err
			}
			instance = r.instanceURI
		case strings.HasPrefix(lower, "athenz://hostname/"):
			h := lower[len("athenz://hostname/"):]
			if !r.hostnames[h] {
				return nil, refuse(FieldURI, u, "hostname is not one the service may use")
			}
			hosts = appendUnique(hosts, "athenz://hostname/"+h)
		default:
			return nil, refuse(FieldURI, u, "URI not allowed in a service certificate; want only %q, athenz://instanceid/<provider>/<id> and athenz://hostname/<allowed hostname>", r.spiffe)
		}
	}
	if r.instanceURI != "" && instance == "" {
		return nil, refuse(FieldURI, "", "missing the instance id URI; want %q", r.instanceURI)
	}
	if spiffe == "" && addSpiffe {
		spiffe = r.spiffe
	}
	var out []*url.URL
	for _, s := range append([]string{spiffe, instance}, hosts...) {
		if s == "" {
			continue
		}
		u, err := mustURL(s)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// checkInstanceURI compares an instance id URI with the attested provider and instance.
func (r *serviceRules) checkInstanceURI(u string) error {
	provider, instance, err := athenz.ParseInstanceIDURI(u)
	if err != nil {
		return refuse(FieldURI, u, "malformed instance id URI; want %q", r.instanceURI)
	}
	if !equalFoldASCII(provider, r.provider) {
		return refuse(FieldURI, u, "names provider %q, but the request was attested by %q; want %q", provider, r.provider, r.instanceURI)
	}
	if instance != r.instanceID {
		return refuse(FieldURI, u, "names instance %q, but the request was attested for instance %q; want %q", instance, r.instanceID, r.instanceURI)
	}
	return nil
}
