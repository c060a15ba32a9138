package issuer

import (
	"crypto"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// How a caller authenticated.
const (
	authMTLS   = "mtls"
	authNToken = "ntoken"
)

// caller is an authenticated principal.
type caller struct {
	principal string // "<domain>.<service>", lower case
	domain    string
	service   string
	method    string // authMTLS or authNToken
	// cert and id are the client certificate and what it says, for mTLS callers.
	cert *x509.Certificate
	id   athenz.CertIdentity
	// keyID is the n-token's key id, for n-token callers.
	keyID string
}

// isRoleCert reports whether the caller presented a role certificate.
func (c *caller) isRoleCert() bool { return c != nil && c.id.IsRoleCertificate() }

// authenticate identifies the caller from its client certificate (verified against the
// CA's roots during the TLS handshake) or, when allowNToken is set and no certificate was
// presented, from an n-token header. It returns nil and no error for an anonymous
// request; credentials that are present but bad are an error (401, or 403 for a revoked
// certificate). It never returns a role certificate caller unless allowRoleCert is set.
func (s *Server) authenticate(r *http.Request, snap *snapshot, allowNToken, allowRoleCert bool) (*caller, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.certCaller(r, r.TLS.PeerCertificates[0], allowRoleCert)
	}
	tok := r.Header.Get(s.cfg.Tokens.NTokenHeader)
	if tok == "" || !allowNToken {
		return nil, nil
	}
	if c, ok := s.ntokens.get(tok, snap, s.now()); ok {
		return c, nil
	}
	n, err := athenz.ParseNToken(tok)
	if err != nil {
		return nil, unauthenticated("n-token: %s", athenz.TokenErrorReason(err))
	}
	d, svc, kid := n.KeySource()
	pub, ok := s.publicKey(snap, strings.ToLower(d), strings.ToLower(svc), kid)
	if !ok {
		return nil, unauthenticated("n-token: no public key %q registered for %s", kid, d+"."+svc)
	}
	if err := n.Verify(pub, s.now(), athenz.NTokenOptions{}); err != nil {
		return nil, unauthenticated("n-token of %s: %s", n.Principal(), athenz.TokenErrorReason(err))
	}
	domain, service := strings.ToLower(n.Domain), strings.ToLower(n.Name)
	c := &caller{principal: athenz.Principal(domain, service), domain: domain, service: service, method: authNToken, keyID: n.KeyID}
	s.ntokens.put(tok, snap, n.ExpiryTime, c)
	return c, nil
}

// ntokenCache remembers n-tokens that verified, so that a client reusing its n-token
// (SIA, client-sidecar) costs one signature check per token, not per request. An entry is
// good only with the domain data it was verified against (a key removed from a domain
// file takes effect at the reload) and until the token expires. Bounded: when full it is
// emptied.
type ntokenCache struct {
	mu sync.Mutex
	m  map[string]ntokenEntry
}

type ntokenEntry struct {
	snap    *snapshot
	expires time.Time
	c       *caller
}

const maxNTokenCache = 10000

func (nc *ntokenCache) get(tok string, snap *snapshot, now time.Time) (*caller, bool) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	e, ok := nc.m[tok]
	if !ok || e.snap != snap || now.After(e.expires) {
		return nil, false
	}
	return e.c, true
}

func (nc *ntokenCache) put(tok string, snap *snapshot, expires time.Time, c *caller) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.m == nil || len(nc.m) >= maxNTokenCache {
		nc.m = make(map[string]ntokenEntry)
	}
	nc.m[tok] = ntokenEntry{snap: snap, expires: expires, c: c}
}

// certCaller reads the principal of a verified client certificate and refuses revoked
// ones.
func (s *Server) certCaller(r *http.Request, cert *x509.Certificate, allowRoleCert bool) (*caller, error) {
	id, err := athenz.PrincipalFromCertificate(cert)
	if err != nil {
		return nil, unauthenticated("client certificate names no Athenz principal")
	}
	if id.IsRoleCertificate() && !allowRoleCert {
		return nil, forbidden(reasonForbidden, "role certificates are not accepted as credentials here; use a service certificate")
	}
	revoked, err := s.store.IsRevoked(r.Context(), store.SerialString(cert.SerialNumber))
	if err != nil {
		return nil, unavailable("the certificate store", err)
	}
	if revoked {
		return nil, forbidden(reasonRevoked, "the client certificate was revoked")
	}
	principal := strings.ToLower(id.Principal)
	return &caller{
		principal: principal, domain: strings.ToLower(id.Domain), service: strings.ToLower(id.Service),
		method: authMTLS, cert: cert, id: id,
	}, nil
}

// requireCaller authenticates and refuses anonymous requests with 401.
func (s *Server) requireCaller(r *http.Request, snap *snapshot, allowNToken bool) (*caller, error) {
	c, err := s.authenticate(r, snap, allowNToken, false)
	if err != nil {
		return nil, err
	}
	if c == nil {
		if allowNToken {
			return nil, unauthenticated("authentication required: a client certificate or an n-token in %s", s.cfg.Tokens.NTokenHeader)
		}
		return nil, unauthenticated("authentication required: a client certificate")
	}
	return c, nil
}

// publicKey finds a registered public key: the issuer's own keys for sys.auth.zts and
// sys.auth.zms, the domain data for every other service.
func (s *Server) publicKey(snap *snapshot, domain, service, keyID string) (crypto.PublicKey, bool) {
	if domain == athenz.SysAuthDomain {
		switch service {
		case athenz.ZTSService:
			if keyID == s.ztsKey.id {
				return s.ztsKey.pub, true
			}
			return nil, false
		case athenz.ZMSService:
			if keyID == s.zmsKey.id {
				return s.zmsKey.pub, true
			}
			return nil, false
		}
	}
	return snap.ServicePublicKey(domain, service, keyID)
}

// clientIP returns the request's peer address without the port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
