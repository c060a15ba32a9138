package athenz

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// ErrUnmappedSpiffeID is returned, wrapped, by PrincipalFromCertificate for a
// certificate that names no Athenz principal but carries a well-formed Istio SPIFFE ID
// (and no CN). The returned CertIdentity then holds SpiffeID and Spiffe, so the caller
// can apply its namespace/service-account mapping. It also wraps ErrInvalidIdentity.
var ErrUnmappedSpiffeID = fmt.Errorf("%w: SPIFFE ID names no Athenz service", ErrInvalidIdentity)

// RoleRef is one role of a role certificate.
type RoleRef struct {
	Domain string
	Role   string
}

// CertIdentity is what an Athenz service or role certificate says about its holder.
type CertIdentity struct {
	// Principal is "<domain>.<service>": the CN of a service certificate, or the holder
	// of a role certificate (from athenz://principal/ or the single email SAN).
	Principal string
	// Domain and Service split Principal at its last dot.
	Domain  string
	Service string
	// Roles are the roles a role certificate grants: the CN's role first, then any
	// athenz://role/ URIs not already listed. Empty for service certificates.
	Roles []RoleRef
	// InstanceProvider and InstanceID come from athenz://instanceid/<provider>/<id>, or
	// InstanceID alone from the legacy DNS form <id>.instanceid.athenz.<suffix>.
	InstanceProvider string
	InstanceID       string
	// SpiffeID is the certificate's one SPIFFE URI as written, "" when it has none, and
	// Spiffe its parsed form.
	SpiffeID string
	Spiffe   SpiffeIdentity
}

// IsRoleCertificate reports whether the identity came from a role certificate.
func (c CertIdentity) IsRoleCertificate() bool { return len(c.Roles) > 0 }

// oidCommonName is the X.520 commonName attribute.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// certURIs sorts a certificate's URI SANs by kind. Other schemes and athenz:// hosts are
// ignored; they name no identity.
type certURIs struct {
	spiffe, instance, roles, principals []string
}

func collectCertURIs(cert *x509.Certificate) certURIs {
	var u certURIs
	for _, uri := range cert.URIs {
		s := uri.String()
		switch {
		case uri.Scheme == "spiffe":
			u.spiffe = append(u.spiffe, s)
		case strings.HasPrefix(s, instanceIDURIPrefix):
			u.instance = append(u.instance, s)
		case strings.HasPrefix(s, roleURIPrefix):
			u.roles = append(u.roles, s)
		case strings.HasPrefix(s, principalURIPrefix):
			u.principals = append(u.principals, s)
		}
	}
	return u
}

// PrincipalFromCertificate reads the Athenz identity of a certificate that has ALREADY
// been verified against the trusted CA; it checks names and consistency, not trust.
//
// A CN containing ':' must be a role certificate CN "<domain>:role.<role>". The holder
// is then named by athenz://principal/<p> or by the local part of the single email SAN
// (athenzutils.ExtractServicePrincipal reads only the latter); when both are present
// they must agree. The email's domain is not checked here: ZTS checks it against its DNS
// suffixes when it issues the certificate. Roles come from the CN and from athenz://role/ URIs. A SPIFFE URI, if
// any, must be the role form of the CN's role.
//
// Otherwise the CN is the principal "<domain>.<service>". A SPIFFE URI in an Athenz
// service form must name the same principal (compared ignoring case, as ZTS compares); an
// Istio-form SPIFFE URI is kept but cannot be checked. A certificate without a CN is read
// from its SPIFFE URI: an Athenz service form gives the principal, an Istio form gives an
// error wrapping ErrUnmappedSpiffeID together with the SPIFFE fields. athenz://role/ URIs
// in a service certificate are refused, and an athenz://principal/ URI must equal the CN.
//
// Always refused: more than one CN, SPIFFE URI, instance id URI or principal URI;
// conflicting instance ids; names that fail the validators in names.go; URIs with escapes,
// queries, fragments or extra path segments ("../" included). DNS and IP SANs and email
// SANs of service certificates are not identity and are not read, apart from the legacy
// instance id DNS name. Names are returned as written; Athenz lower-cases them on input.
// Errors wrap ErrInvalidIdentity.
func PrincipalFromCertificate(cert *x509.Certificate) (CertIdentity, error) {
	if cert == nil {
		return CertIdentity{}, fmt.Errorf("certificate: %w: none given", ErrInvalidIdentity)
	}
	cns := 0
	for _, attr := range cert.Subject.Names {
		if attr.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		return CertIdentity{}, fmt.Errorf("certificate: %w: %d common names, want one", ErrInvalidIdentity, cns)
	}
	u := collectCertURIs(cert)
	for _, c := range []struct {
		kind string
		list []string
	}{{"SPIFFE", u.spiffe}, {instanceIDURIPrefix, u.instance}, {principalURIPrefix, u.principals}} {
		if len(c.list) > 1 {
			return CertIdentity{}, fmt.Errorf("certificate: %w: %d %s URIs, want at most one", ErrInvalidIdentity, len(c.list), c.kind)
		}
	}
	var id CertIdentity
	if len(u.spiffe) == 1 {
		s, err := ParseSpiffeID(u.spiffe[0])
		if err != nil {
			return CertIdentity{}, fmt.Errorf("certificate: %w", err)
		}
		id.SpiffeID, id.Spiffe = u.spiffe[0], s
	}
	if err := id.readInstanceID(cert, u); err != nil {
		return CertIdentity{}, err
	}
	cn := cert.Subject.CommonName
	var err error
	switch {
	case strings.IndexByte(cn, ':') >= 0:
		err = id.readRoleCert(cert, cn, u)
	case cn != "":
		err = id.readServiceCert(cn, u)
	case id.Spiffe.Form == SpiffeFormIstio && len(u.roles)+len(u.principals) == 0:
		return CertIdentity{SpiffeID: id.SpiffeID, Spiffe: id.Spiffe}, fmt.Errorf("certificate %s: %w", id.SpiffeID, ErrUnmappedSpiffeID)
	case id.Spiffe.Form == SpiffeFormService || id.Spiffe.Form == SpiffeFormServiceNamespace:
		err = id.readServiceCert(id.Spiffe.Principal(), u)
	default:
		err = errors.New("no common name and no Athenz service SPIFFE ID")
	}
	if err != nil {
		return CertIdentity{}, fmt.Errorf("certificate CN %.128q: %w: %w", cn, ErrInvalidIdentity, err)
	}
	return id, nil
}

// readInstanceID fills the instance id from the URI SAN, else from the DNS SANs.
func (id *CertIdentity) readInstanceID(cert *x509.Certificate, u certURIs) error {
	if len(u.instance) == 1 {
		provider, instance, err := ParseInstanceIDURI(u.instance[0])
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		id.InstanceProvider, id.InstanceID = provider, instance
		return nil
	}
	for _, name := range cert.DNSNames {
		v, ok := ParseInstanceIDDNSName(name)
		if !ok {
			continue
		}
		if id.InstanceID != "" && id.InstanceID != v {
			return fmt.Errorf("certificate: %w: two instance id DNS names, %q and %q", ErrInvalidIdentity, id.InstanceID, v)
		}
		id.InstanceID = v
	}
	return nil
}

// readServiceCert fills a service certificate's principal from cn.
func (id *CertIdentity) readServiceCert(cn string, u certURIs) error {
	domain, service, err := splitServicePrincipal(cn)
	if err != nil {
		return fmt.Errorf("service principal: %w", err)
	}
	if len(u.roles) > 0 {
		return errors.New("athenz://role/ URI in a service certificate")
	}
	if len(u.principals) == 1 {
		p, err := ParsePrincipalURI(u.principals[0])
		if err != nil {
			return err
		}
		if p != cn {
			return fmt.Errorf("principal URI names %q, CN names %q", p, cn)
		}
	}
	switch id.Spiffe.Form {
	case SpiffeFormUnknown, SpiffeFormIstio:
	case SpiffeFormService, SpiffeFormServiceNamespace:
		if !strings.EqualFold(id.Spiffe.Principal(), cn) {
			return fmt.Errorf("SPIFFE ID %s names %q", id.SpiffeID, id.Spiffe.Principal())
		}
	default:
		return fmt.Errorf("role SPIFFE ID %s in a service certificate", id.SpiffeID)
	}
	id.Principal, id.Domain, id.Service = cn, domain, service
	return nil
}

// readRoleCert fills a role certificate's roles and holder.
func (id *CertIdentity) readRoleCert(cert *x509.Certificate, cn string, u certURIs) error {
	domain, role, ok := ParseRoleCertCN(cn)
	if !ok {
		return errors.New("want a service principal or a role CN <domain>:role.<role>")
	}
	var principal string
	if len(u.principals) == 1 {
		p, err := ParsePrincipalURI(u.principals[0])
		if err != nil {
			return err
		}
		principal = p
	}
	switch n := len(cert.EmailAddresses); {
	case n > 1:
		return fmt.Errorf("%d email SANs, want at most one", n)
	case n == 1:
		local, _, found := strings.Cut(cert.EmailAddresses[0], "@")
		if !found {
			return fmt.Errorf("email SAN %.128q has no '@'", cert.EmailAddresses[0])
		}
		if principal != "" && local != principal {
			return fmt.Errorf("email SAN names %q, principal URI names %q", local, principal)
		}
		principal = local
	}
	if principal == "" {
		return errors.New("role certificate names no principal (athenz://principal/ URI or email SAN)")
	}
	pd, ps, err := splitServicePrincipal(principal)
	if err != nil {
		return fmt.Errorf("role certificate principal %.128q: %w", principal, err)
	}
	switch id.Spiffe.Form {
	case SpiffeFormUnknown:
	case SpiffeFormRole, SpiffeFormRoleNamespace:
		if !strings.EqualFold(id.Spiffe.Domain, domain) || !strings.EqualFold(id.Spiffe.Role, role) {
			return fmt.Errorf("SPIFFE ID %s names a role other than the CN's", id.SpiffeID)
		}
	default:
		return fmt.Errorf("SPIFFE ID %s is not a role SPIFFE ID", id.SpiffeID)
	}
	roles := []RoleRef{{domain, role}}
	for _, uri := range u.roles {
		d, r, err := ParseRoleURI(uri)
		if err != nil {
			return err
		}
		if ref := (RoleRef{d, r}); !containsRole(roles, ref) {
			roles = append(roles, ref)
		}
	}
	id.Principal, id.Domain, id.Service, id.Roles = principal, pd, ps, roles
	return nil
}

func containsRole(roles []RoleRef, r RoleRef) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}
