package ca

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// SubjectPolicy says which subject attributes besides the CN a certificate may carry.
// Athenz clients put O, OU and C in their CSRs (zts-svccert: C=US, O=Oath Inc., OU=Athenz;
// SIA: OU = the provider name), and some relying parties read them, so they may be passed
// through; but a CSR must not be able to claim an organization the issuer has not
// approved. The zero value drops every attribute but the CN.
type SubjectPolicy struct {
	// Organizations are the O values passed through. Empty: O is dropped from the
	// certificate (not refused). Otherwise every O in the CSR must be in this list, or
	// the CSR is refused.
	Organizations []string
	// OrganizationalUnits are the OU values passed through, with the same rules as
	// Organizations. To accept SIA's OU, list the provider name.
	OrganizationalUnits []string
	// Countries are the C values passed through, with the same rules as Organizations.
	Countries []string
}

// apply copies the allowed O, OU and C values of the CSR into req. Other subject
// attributes (L, ST, street, serialNumber, emailAddress, ...) are always dropped.
func (p SubjectPolicy) apply(csr *x509.CertificateRequest, req *IssueRequest) error {
	var err error
	if req.Organization, err = passThrough(FieldOrganization, csr.Subject.Organization, p.Organizations); err != nil {
		return err
	}
	if req.OrganizationalUnit, err = passThrough(FieldOrganizationalUnit, csr.Subject.OrganizationalUnit, p.OrganizationalUnits); err != nil {
		return err
	}
	req.Country, err = passThrough(FieldCountry, csr.Subject.Country, p.Countries)
	return err
}

func passThrough(field string, values, allowed []string) ([]string, error) {
	if len(allowed) == 0 || len(values) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(values))
	for _, v := range values {
		if !slices.Contains(allowed, v) {
			return nil, refuse(field, v, "not an allowed value; want one of %q", allowed)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkCommonName requires the CSR's single CN to equal want, ignoring case as ZTS does,
// or, when allowEmpty is set, no CN at all. The certificate always gets want.
func checkCommonName(csr *x509.CertificateRequest, want string, allowEmpty bool) error {
	cns := 0
	for _, attr := range csr.Subject.Names {
		if attr.Type.Equal(oidCommonName) {
			cns++
		}
	}
	switch {
	case cns == 0 && allowEmpty:
		return nil
	case cns == 0:
		return refuse(FieldCommonName, "", "missing; want %q", want)
	case cns > 1:
		return refuse(FieldCommonName, csr.Subject.CommonName, "%d common names; want one, %q", cns, want)
	case !equalFoldASCII(csr.Subject.CommonName, want):
		return refuse(FieldCommonName, csr.Subject.CommonName, "want %q", want)
	}
	return nil
}

// equalFoldASCII reports whether a and b are equal ignoring ASCII case only. Unicode
// folding (strings.EqualFold) would let a CN spelled with U+212A KELVIN SIGN match "k".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// checkIPs returns the CSR's IP SANs in canonical form when every one is allowed.
func checkIPs(raw [][]byte, allowed []net.IP) ([]net.IP, error) {
	var out []net.IP
	for _, b := range raw {
		ip := net.IP(b)
		i := slices.IndexFunc(allowed, ip.Equal)
		if i < 0 {
			if len(allowed) == 0 {
				return nil, refuse(FieldIP, ip.String(), "IP SANs are not allowed for this request")
			}
			return nil, refuse(FieldIP, ip.String(), "not an allowed IP; want one of %v", allowed)
		}
		c := canonicalIP(allowed[i])
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out, nil
}

// canonicalIP returns the 4-byte form of IPv4 addresses, so certificates carry 4 bytes.
func canonicalIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// appendUnique appends s to list unless it is already there.
func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// mustURL parses a URI this package built from validated names.
func mustURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: URI %q: %v", ErrBadIdentity, s, err)
	}
	return u, nil
}

// identityError reports an invalid identity given to a check function.
func identityError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadIdentity, fmt.Sprintf(format, args...))
}

// normalizeDNSName lower-cases a configured DNS name or suffix, drops one leading dot
// (ZTS writes suffixes as ".athenz.cloud"), and checks it is a syntactically valid DNS
// name: 1 to 253 bytes, labels of 1 to 63 letters, digits, '-' or '_', not starting or
// ending with '-'.
func normalizeDNSName(kind, s string) (string, error) {
	n := strings.ToLower(strings.TrimPrefix(s, "."))
	if n == "" || len(n) > 253 {
		return "", identityError("%s %q: want a DNS name of 1 to 253 bytes", kind, s)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", identityError("%s %q: empty, over-long or dash-edged label %q", kind, s, label)
		}
		for i := range len(label) {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return "", identityError("%s %q: invalid character %q", kind, s, c)
			}
		}
	}
	return n, nil
}

// normalizeSuffixes normalizes a DNS suffix list, dropping duplicates.
func normalizeSuffixes(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		n, err := normalizeDNSName("DNS suffix", s)
		if err != nil {
			return nil, err
		}
		out = appendUnique(out, n)
	}
	return out, nil
}

// quoteList formats names for a message: "a", "b" or "c", shortened past 6 entries.
func quoteList(names []string) string {
	const max = 6
	var b strings.Builder
	for i, n := range names {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(names)-max)
			break
		}
		if i > 0 {
			if i == len(names)-1 {
				b.WriteString(" or ")
			} else {
				b.WriteString(", ")
			}
		}
		fmt.Fprintf(&b, "%q", n)
	}
	return b.String()
}
