package athenz

import (
	"errors"
	"fmt"
	"strings"
)

// The Athenz identity conventions for certificates (athenz-compat.md section 2): how a
// principal, its DNS name, its instance id, its roles and its SPIFFE ID are written, and
// strict parsers for each. The parsers read the string forms exactly: no percent
// escapes, queries, fragments, ports, user info, empty or dot segments, and every name
// checked by the validators in names.go. Every parse error wraps ErrInvalidIdentity.

// ErrInvalidIdentity is wrapped by every error from the identity parsers in this package
// (SPIFFE IDs, athenz:// URIs, role certificate CNs, certificates), so the authz layer
// can tell "this credential names nobody" from other failures.
var ErrInvalidIdentity = errors.New("invalid Athenz identity")

// URI prefixes of the athenz:// SANs.
const (
	instanceIDURIPrefix = "athenz://instanceid/"
	roleURIPrefix       = "athenz://role/"
	principalURIPrefix  = "athenz://principal/"
	// instanceIDDNSTag separates the instance id from the suffix in the legacy DNS form.
	instanceIDDNSTag = ".instanceid.athenz."
)

// maxIdentityLength bounds every URI and DNS name the parsers read.
const maxIdentityLength = 2 * MaxNameLength

func identityError(kind, s, format string, args ...any) error {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return fmt.Errorf("%s %q: %w: %s", kind, s, ErrInvalidIdentity, fmt.Sprintf(format, args...))
}

// Principal returns the principal name "<domain>.<service>". It does not validate: build
// from names that passed ValidateDomainName and ValidateSimpleName.
func Principal(domain, service string) string { return domain + "." + service }

// splitServicePrincipal cuts a principal at its last dot and validates both halves: the
// domain as a DomainName and the service as a SimpleName, the reading ZTS gives to CNs.
func splitServicePrincipal(p string) (domain, service string, err error) {
	domain, service, ok := SplitPrincipal(p)
	if !ok {
		return "", "", errors.New("want <domain>.<service>")
	}
	if err := ValidateDomainName(domain); err != nil {
		return "", "", err
	}
	if err := ValidateSimpleName(service); err != nil {
		return "", "", err
	}
	return domain, service, nil
}

// ServiceDNSName returns the service DNS SAN "<service>.<domain-dashed>.<suffix>", e.g.
// ServiceDNSName("sports.prod", "api", "athenz.cloud") = "api.sports-prod.athenz.cloud".
// A leading dot on suffix (as in ZTS's ".athenz.cloud" setting) is dropped. The dashed
// domain is not one to one (see DomainToDNS), so a DNS SAN never proves an identity.
func ServiceDNSName(domain, service, suffix string) string {
	return service + "." + DomainToDNS(domain) + "." + strings.TrimPrefix(suffix, ".")
}

// InstanceIDURI returns the instance id URI SAN "athenz://instanceid/<provider>/<id>".
// It does not validate; ParseInstanceIDURI states the rules.
func InstanceIDURI(provider, id string) string {
	return instanceIDURIPrefix + provider + "/" + id
}

// ParseInstanceIDURI reads "athenz://instanceid/<provider>/<id>": provider must be a
// ServiceName such as "sys.auth.zts" and id a non-empty RDL PathElement
// ([a-zA-Z0-9-._~=+@$,:]) other than "." and "..".
func ParseInstanceIDURI(uri string) (provider, id string, err error) {
	const kind = "instance id URI"
	rest, ok := cutIdentityPrefix(uri, instanceIDURIPrefix)
	if !ok {
		return "", "", identityError(kind, uri, "want %s<provider>/<id>", instanceIDURIPrefix)
	}
	provider, id, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", identityError(kind, uri, "want %s<provider>/<id>", instanceIDURIPrefix)
	}
	if err := ValidateServiceName(provider); err != nil {
		return "", "", identityError(kind, uri, "provider: %v", err)
	}
	if err := checkInstanceID(id, false); err != nil {
		return "", "", identityError(kind, uri, "%v", err)
	}
	return provider, id, nil
}

// InstanceIDDNSName returns the legacy instance id DNS SAN
// "<id>.instanceid.athenz.<suffix>" (a leading dot on suffix is dropped).
func InstanceIDDNSName(id, suffix string) string {
	return id + instanceIDDNSTag + strings.TrimPrefix(suffix, ".")
}

// ParseInstanceIDDNSName reads the instance id from a DNS SAN
// "<id>.instanceid.athenz.<suffix>", cutting at the first ".instanceid.athenz." as Athenz
// does. ok is false unless the name has that shape, the suffix is not empty, and the id
// is made of DNS labels ([A-Za-z0-9_-], dot-separated, none empty).
func ParseInstanceIDDNSName(name string) (id string, ok bool) {
	if len(name) > maxIdentityLength {
		return "", false
	}
	id, suffix, found := strings.Cut(name, instanceIDDNSTag)
	if !found || suffix == "" || checkInstanceID(id, true) != nil {
		return "", false
	}
	return id, true
}

// checkInstanceID checks an instance id: an RDL PathElement, or in dns mode a dotted
// sequence of [A-Za-z0-9_-] labels.
func checkInstanceID(id string, dns bool) error {
	switch {
	case id == "":
		return errors.New("empty instance id")
	case len(id) > MaxNameLength:
		return fmt.Errorf("instance id of %d bytes, limit %d", len(id), MaxNameLength)
	case id == "." || id == "..":
		return fmt.Errorf("instance id %q", id)
	}
	if dns {
		if !IsCompoundName(strings.ReplaceAll(id, "-", "_")) {
			return fmt.Errorf("instance id %q is not a DNS name", id)
		}
		return nil
	}
	for i := range len(id) {
		c := id[i]
		if nameByte[c] || strings.IndexByte("-._~=+@$,:", c) >= 0 {
			continue
		}
		return fmt.Errorf("invalid character %s at position %d of the instance id", describeByte(id, i), i)
	}
	return nil
}

// RoleURI returns the role URI SAN "athenz://role/<domain>/<role>" that
// athenz-authorizer reads from role certificates.
func RoleURI(domain, role string) string { return roleURIPrefix + domain + "/" + role }

// ParseRoleURI reads "athenz://role/<domain>/<role>" with a DomainName and an EntityName.
func ParseRoleURI(uri string) (domain, role string, err error) {
	const kind = "role URI"
	rest, ok := cutIdentityPrefix(uri, roleURIPrefix)
	if !ok {
		return "", "", identityError(kind, uri, "want %s<domain>/<role>", roleURIPrefix)
	}
	domain, role, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", identityError(kind, uri, "want %s<domain>/<role>", roleURIPrefix)
	}
	if err := ValidateDomainName(domain); err != nil {
		return "", "", identityError(kind, uri, "%v", err)
	}
	if err := ValidateEntityName(role); err != nil {
		return "", "", identityError(kind, uri, "role: %v", err)
	}
	return domain, role, nil
}

// PrincipalURI returns the principal URI SAN "athenz://principal/<principal>" of role
// certificates.
func PrincipalURI(principal string) string { return principalURIPrefix + principal }

// ParsePrincipalURI reads "athenz://principal/<domain>.<service>"; the principal must
// split into a DomainName and a SimpleName.
func ParsePrincipalURI(uri string) (principal string, err error) {
	const kind = "principal URI"
	rest, ok := cutIdentityPrefix(uri, principalURIPrefix)
	if !ok {
		return "", identityError(kind, uri, "want %s<domain>.<service>", principalURIPrefix)
	}
	if _, _, err := splitServicePrincipal(rest); err != nil {
		return "", identityError(kind, uri, "%v", err)
	}
	return rest, nil
}

// ParseRoleCertCN reads a role certificate common name "<domain>:role.<role>". ok is
// false unless the domain is a DomainName and the role an EntityName.
func ParseRoleCertCN(cn string) (domain, role string, ok bool) {
	domain, role, ok = SplitRoleName(cn)
	if !ok || !IsDomainName(domain) || !IsEntityName(role) {
		return "", "", false
	}
	return domain, role, true
}

// cutIdentityPrefix strips prefix from s and reports whether what is left is a plausible
// URI tail: bounded, and free of the characters that would make a URI mean something
// else to another parser (escapes, query, fragment, back-slashes, spaces, controls).
func cutIdentityPrefix(s, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(s) > maxIdentityLength {
		return "", false
	}
	for i := range len(rest) {
		if c := rest[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`%?#\`, c) >= 0 {
			return "", false
		}
	}
	return rest, true
}
