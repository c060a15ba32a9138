package issuer

import (
	"net/http"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// handleServiceIdentity is GET /domain/{domain}/service/{service}: a service with its
// registered public keys (ybase64 PEM). sys.auth.zts and sys.auth.zms are the issuer's
// own ZTS and ZMS keys (athenz-authorizer reads both); every other service comes from the
// domain data. ETag is the quoted modified time; If-None-Match equal to it gives 304. No
// credentials needed.
func (s *Server) handleServiceIdentity(w http.ResponseWriter, r *http.Request) error {
	domain, service, err := pathNames(r)
	if err != nil {
		return err
	}
	ri := info(r)
	ri.domain, ri.service = domain, service
	si, err := s.serviceIdentityDoc(s.snap(), domain, service)
	if err != nil {
		return err
	}
	etag := `"` + si.Modified.String() + `"`
	w.Header().Set("ETag", etag)
	if inm := ifNoneMatch(r.Header.Get("If-None-Match")); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	writeJSON(w, http.StatusOK, si)
	return nil
}

// serviceIdentityDoc builds the ServiceIdentity of domain.service, or 404.
func (s *Server) serviceIdentityDoc(snap *snapshot, domain, service string) (*ServiceIdentity, error) {
	principal := athenz.Principal(domain, service)
	if domain == athenz.SysAuthDomain {
		var k *signingKey
		switch service {
		case athenz.ZTSService:
			k = s.ztsKey
		case athenz.ZMSService:
			k = s.zmsKey
		}
		if k != nil {
			m := athenz.NewTimestamp(s.started)
			return &ServiceIdentity{Name: principal, PublicKeys: []PublicKeyEntry{{Key: k.entry, ID: k.id}}, Modified: &m}, nil
		}
	}
	svc := snap.services[principal]
	if svc == nil {
		if !snap.hasDomain(domain) {
			return nil, notFound("domain %q not found", domain)
		}
		return nil, notFound("service %s not found", principal)
	}
	si := &ServiceIdentity{Name: principal, ProviderEndpoint: svc.ProviderEndpoint, Hosts: svc.Hosts}
	for _, k := range svc.PublicKeys {
		si.PublicKeys = append(si.PublicKeys, PublicKeyEntry{Key: k.Key, ID: k.ID})
	}
	m := svc.Modified
	if m.IsZero() {
		m = snap.modified[domain]
	}
	si.Modified = &m
	return si, nil
}
