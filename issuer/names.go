package issuer

import (
	"crypto/x509"
	"net/http"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Input names, lower-cased as ZTS lower-cases them and checked against the RDL patterns;
// a bad name is 400.

func checkDomain(v, what string) (string, error) {
	d := strings.ToLower(v)
	if !athenz.IsDomainName(d) {
		return "", badRequest("%s %.200q is not a valid domain name", what, v)
	}
	return d, nil
}

func checkService(v, what string) (string, error) {
	s := strings.ToLower(v)
	if !athenz.IsSimpleName(s) {
		return "", badRequest("%s %.200q is not a valid service name", what, v)
	}
	return s, nil
}

func checkProvider(v, what string) (string, error) {
	p := strings.ToLower(v)
	if !athenz.IsServiceName(p) {
		return "", badRequest("%s %.200q is not a valid provider service name", what, v)
	}
	return p, nil
}

func checkInstanceID(v string) (string, error) {
	if _, _, err := athenz.ParseInstanceIDURI(athenz.InstanceIDURI("a.b", v)); err != nil {
		return "", badRequest("instance id %.200q is not a valid path element", v)
	}
	return v, nil
}

// pathNames reads and checks the {domain} and {service} path values.
func pathNames(r *http.Request) (domain, service string, err error) {
	if domain, err = checkDomain(r.PathValue("domain"), "domain"); err != nil {
		return "", "", err
	}
	if service, err = checkService(r.PathValue("service"), "service"); err != nil {
		return "", "", err
	}
	return domain, service, nil
}

// instancePath reads and checks the {provider}, {domain}, {service} and {instanceId} path
// values of an instance route and records them in the request's audit record.
func instancePath(r *http.Request) (provider, domain, service, instanceID string, err error) {
	if provider, err = checkProvider(r.PathValue("provider"), "provider"); err != nil {
		return "", "", "", "", err
	}
	if domain, service, err = pathNames(r); err != nil {
		return "", "", "", "", err
	}
	if instanceID, err = checkInstanceID(r.PathValue("instanceId")); err != nil {
		return "", "", "", "", err
	}
	ri := info(r)
	ri.provider, ri.domain, ri.service, ri.instance = provider, domain, service, instanceID
	return provider, domain, service, instanceID, nil
}

// csrInstanceID returns the instance id and provider a CSR names in its
// athenz://instanceid/<provider>/<id> URI, or the id of its legacy DNS form
// (<id>.instanceid.athenz.<suffix>) with an empty provider. Malformed or conflicting
// names are left for CheckServiceCSR to refuse with a precise message.
func csrInstanceID(csr *x509.CertificateRequest) (provider, id string) {
	for _, u := range csr.URIs {
		if p, i, err := athenz.ParseInstanceIDURI(u.String()); err == nil {
			return strings.ToLower(p), i
		}
	}
	for _, n := range csr.DNSNames {
		if i, ok := athenz.ParseInstanceIDDNSName(n); ok {
			return "", i
		}
	}
	return "", ""
}

// minutes converts a request's expiryTime (minutes; nil or 0: default) to a validity.
func minutes(m *int32) (time.Duration, error) {
	if m == nil || *m == 0 {
		return 0, nil
	}
	if *m < 0 {
		return 0, badRequest("expiryTime %d is negative", *m)
	}
	return time.Duration(*m) * time.Minute, nil
}

func checkRole(v string) (string, error) {
	role := strings.ToLower(v)
	if !athenz.IsEntityName(role) {
		return "", badRequest("role %.200q is not a valid role name", v)
	}
	return role, nil
}

// checkHostname checks the optional hostname of a register or refresh request, which is
// recorded with the certificate (it goes into no certificate unless an attestor proves it).
func checkHostname(h string) error {
	if h != "" && !isDNSName(h) {
		return badRequest("hostname %.100q is not a DNS name", h)
	}
	return nil
}
