package ca

import (
	"crypto/x509"
	"net"
	"net/url"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// RoleIdentity is what the issuer has established before signing a role certificate: the
// role, the principal that holds it (membership already checked) and what the caller's
// own service certificate says. CheckRoleCSR trusts every field and validates their
// syntax only.
type RoleIdentity struct {
	// Domain and Role name the role; the CN is "<Domain>:role.<Role>". Required.
	Domain string
	Role   string
	// Principal is the service the certificate is for, "<domain>.<service>": the caller,
	// or for a proxy request the proxyForPrincipal. Required.
	Principal string
	// DNSSuffixes are the suffixes allowed in the principal's email SAN
	// <principal>@<suffix> and DNS SAN <service>.<principal-domain-dashed>.<suffix>
	// (zts-rolecert adds both). Empty: neither is allowed, so the principal must be named
	// by athenz://principal/<principal>.
	DNSSuffixes []string
	// SpiffeTrustDomain, when set, selects the SPIFFE form
	// spiffe://<trust domain>/ns/<domain>/ra/<role>; empty, spiffe://<domain>/ra/<role>.
	SpiffeTrustDomain string
	// InstanceID is the instance id of the caller's service certificate. When the CSR
	// carries athenz://instanceid/<provider>/<id>, id must equal it (and provider must
	// equal InstanceProvider when that is set). Empty: the CSR may carry no instance id.
	InstanceID string
	// InstanceProvider is the provider of the caller's instance id; empty, not compared.
	InstanceProvider string
	// ProxyUser is the calling principal for a proxy request (proxyForPrincipal); the CSR
	// must then carry athenz://proxyuser/<ProxyUser>. Empty: the CSR may carry none.
	ProxyUser string
	// AddSpiffeID adds the role SPIFFE ID when the CSR has none. Default false.
	AddSpiffeID bool
	// ClientAuthOnly issues the certificate with extKeyUsage clientAuth only (a role
	// certificate is a client credential). Default false: serverAuth and clientAuth, as
	// the Java ZTS keystore signer issues them.
	ClientAuthOnly bool
	// AllowIPs are the IP addresses the CSR may put in IP SANs. Empty: refused.
	AllowIPs []net.IP
	// Subject says which O, OU and C values pass through. Zero: only the CN is issued.
	Subject SubjectPolicy
}

// roleRules is a RoleIdentity validated and turned into the exact strings allowed.
type roleRules struct {
	cn, principal string
	principalURI  string
	emails        map[string]bool
	emailWant     string
	dns           map[string]bool
	dnsWant       string
	spiffe        string
	proxyURI      string
}

func (id RoleIdentity) rules() (*roleRules, error) {
	domain, role := strings.ToLower(id.Domain), strings.ToLower(id.Role)
	if err := athenz.ValidateDomainName(domain); err != nil {
		return nil, identityError("%v", err)
	}
	if err := athenz.ValidateEntityName(role); err != nil {
		return nil, identityError("role: %v", err)
	}
	r := &roleRules{
		cn:           athenz.JoinRoleName(domain, role),
		principal:    strings.ToLower(id.Principal),
		emails:       map[string]bool{},
		dns:          map[string]bool{},
		spiffe:       athenz.RoleSpiffeID(strings.ToLower(id.SpiffeTrustDomain), domain, role),
		principalURI: athenz.PrincipalURI(strings.ToLower(id.Principal)),
	}
	if _, err := athenz.ParsePrincipalURI(r.principalURI); err != nil {
		return nil, identityError("principal: %v", err)
	}
	if _, err := athenz.ParseSpiffeID(r.spiffe); err != nil {
		return nil, identityError("role SPIFFE ID: %v", err)
	}
	if id.ProxyUser != "" {
		proxy := strings.ToLower(id.ProxyUser)
		if err := athenz.ValidateServiceName(proxy); err != nil {
			return nil, identityError("proxy user: %v", err)
		}
		r.proxyURI = "athenz://proxyuser/" + proxy
	}
	suffixes, err := normalizeSuffixes(id.DNSSuffixes)
	if err != nil {
		return nil, err
	}
	pd, ps, _ := athenz.SplitPrincipal(r.principal)
	var emails, dns []string
	for _, sfx := range suffixes {
		e := r.principal + "@" + sfx
		r.emails[e] = true
		emails = append(emails, e)
		d := athenz.ServiceDNSName(pd, ps, sfx)
		r.dns[d] = true
		dns = append(dns, d)
	}
	r.emailWant, r.dnsWant = quoteList(emails), quoteList(dns)
	return r, nil
}

// CheckRoleCSR compares a role certificate CSR with the identity the issuer has
// established (the caller, its membership in the role already checked) and returns the
// request to sign. The CSR must come from ParseCSR (see CheckServiceCSR). The rules
// (athenz-compat.md §1.3, §2):
//
//   - CN: exactly one, equal to "<domain>:role.<role>" ignoring case; issued lower case.
//   - principal: named by athenz://principal/<principal>, by exactly one email SAN
//     <principal>@<suffix> with a suffix in DNSSuffixes, or by both; at least one.
//   - URI SANs: at most one spiffe:// URI, the role SPIFFE ID (added with AddSpiffeID);
//     athenz://instanceid/<provider>/<id> only when it matches the caller's InstanceID
//     (and InstanceProvider); athenz://proxyuser/<ProxyUser>, required for a proxy
//     request and refused otherwise; nothing else (athenz://role/ multi-role URIs and
//     athenz://hostname/ included).
//   - DNS SANs: only <service>.<principal-domain-dashed>.<suffix> of the principal.
//   - IP SANs: only those in AllowIPs.
//   - O, OU, C: as Subject says.
//
// Refusals are *CSRError; an invalid identity gives an error wrapping ErrBadIdentity.
func CheckRoleCSR(csr *x509.CertificateRequest, id RoleIdentity) (IssueRequest, error) {
	r, err := id.rules()
	if err != nil {
		return IssueRequest{}, err
	}
	if err := checkRequestShape(csr); err != nil {
		return IssueRequest{}, err
	}
	req := IssueRequest{PublicKey: csr.PublicKey, CommonName: r.cn, ClientAuthOnly: id.ClientAuthOnly}
	if err := checkCommonName(csr, r.cn, false); err != nil {
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
			if len(r.dns) == 0 {
				return IssueRequest{}, refuse(FieldDNSName, name, "no DNS name is allowed in this role certificate (no DNS suffix configured)")
			}
			return IssueRequest{}, refuse(FieldDNSName, name, "not the DNS name of the principal %s; want %s", r.principal, r.dnsWant)
		}
		req.DNSNames = appendUnique(req.DNSNames, n)
	}
	switch len(names.emails) {
	case 0:
	case 1:
		e := strings.ToLower(names.emails[0])
		if !r.emails[e] {
			if len(r.emails) == 0 {
				return IssueRequest{}, refuse(FieldEmail, names.emails[0], "no email SAN is allowed (no DNS suffix configured); name the principal with %q", r.principalURI)
			}
			return IssueRequest{}, refuse(FieldEmail, names.emails[0], "does not name the principal %s; want %s", r.principal, r.emailWant)
		}
		req.EmailAddresses = []string{e}
	default:
		return IssueRequest{}, refuse(FieldEmail, names.emails[1], "%d email SANs; want at most one, naming the principal", len(names.emails))
	}
	if req.URIs, err = r.checkURIs(names.uris, id, len(req.EmailAddresses) == 1); err != nil {
		return IssueRequest{}, err
	}
	if req.IPAddresses, err = checkIPs(names.ips, id.AllowIPs); err != nil {
		return IssueRequest{}, err
	}
	return req, nil
}

// checkURIs checks a role CSR's URI SANs and returns the URIs to issue, in SIA's order:
// SPIFFE ID, instance id, principal, proxy user.
func (r *roleRules) checkURIs(uris []string, id RoleIdentity, haveEmail bool) ([]*url.URL, error) {
	var spiffe, instance, principal, proxy string
	for _, u := range uris {
		lower := strings.ToLower(u)
		switch {
		case strings.HasPrefix(lower, "spiffe:"):
			if spiffe != "" {
				return nil, refuse(FieldURI, u, "a second SPIFFE ID; a certificate carries at most one, %q", r.spiffe)
			}
			if !equalFoldASCII(u, r.spiffe) {
				return nil, refuse(FieldURI, u, "not the SPIFFE ID of role %s; want %q", r.cn, r.spiffe)
			}
			spiffe = r.spiffe
		case strings.HasPrefix(lower, "athenz://principal/"):
			if principal != "" {
				return nil, refuse(FieldURI, u, "a second principal URI; want exactly one, %q", r.principalURI)
			}
			if !equalFoldASCII(u, r.principalURI) {
				return nil, refuse(FieldURI, u, "names another principal; want %q", r.principalURI)
			}
			principal = r.principalURI
		case strings.HasPrefix(lower, "athenz://instanceid/"):
			v, err := checkRoleInstanceURI(u, id, instance != "")
			if err != nil {
				return nil, err
			}
			instance = v
		case strings.HasPrefix(lower, "athenz://proxyuser/"):
			if r.proxyURI == "" {
				return nil, refuse(FieldURI, u, "not a proxy request, so the CSR may not name a proxy user")
			}
			if proxy != "" || !equalFoldASCII(u, r.proxyURI) {
				return nil, refuse(FieldURI, u, "want exactly one proxy user URI, %q", r.proxyURI)
			}
			proxy = r.proxyURI
		default:
			return nil, refuse(FieldURI, u, "URI not allowed in a role certificate; want only %q, %q, the caller's athenz://instanceid/ and, for proxy requests, athenz://proxyuser/", r.spiffe, r.principalURI)
		}
	}
	if principal == "" && !haveEmail {
		return nil, refuse(FieldURI, "", "the CSR names no principal; want the URI %q or the email SAN %s", r.principalURI, r.emailWant)
	}
	if r.proxyURI != "" && proxy == "" {
		return nil, refuse(FieldURI, "", "proxy request without the proxy user URI; want %q", r.proxyURI)
	}
	if spiffe == "" && id.AddSpiffeID {
		spiffe = r.spiffe
	}
	var out []*url.URL
	for _, s := range []string{spiffe, instance, principal, proxy} {
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

// checkRoleInstanceURI checks an instance id URI against the caller's certificate and
// returns it in canonical form.
func checkRoleInstanceURI(u string, id RoleIdentity, seen bool) (string, error) {
	if id.InstanceID == "" {
		return "", refuse(FieldURI, u, "the caller's certificate has no instance id, so the CSR may not name one")
	}
	if seen {
		return "", refuse(FieldURI, u, "a second instance id URI; want at most one")
	}
	provider, instance, err := athenz.ParseInstanceIDURI(u)
	if err != nil {
		return "", refuse(FieldURI, u, "malformed instance id URI; want athenz://instanceid/<provider>/%s", id.InstanceID)
	}
	if instance != id.InstanceID {
		return "", refuse(FieldURI, u, "names instance %q, but the caller's certificate names %q", instance, id.InstanceID)
	}
	if id.InstanceProvider != "" && !equalFoldASCII(provider, id.InstanceProvider) {
		return "", refuse(FieldURI, u, "names provider %q, but the caller's certificate names %q", provider, id.InstanceProvider)
	}
	return athenz.InstanceIDURI(strings.ToLower(provider), instance), nil
}
