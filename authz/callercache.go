package authz

import (
	"context"
	"errors"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
)

// peerCacheSize is the number of distinct peers (certificate and principal) whose
// authentication is remembered; a sidecar sees a handful, a gateway a few hundred.
const peerCacheSize = 1024

// peerCachingCallers remembers the answer of a CallerSource for requests identified by
// their peer alone. Envoy sends the same URL-encoded certificate with every request of a
// connection, and parsing it (PEM, X.509, identity rules) costs several times the
// decision itself, so repeating it per request would make the server's cost per check
// follow the certificate parser instead of the policy.
//
// Only requests with neither an Authorization nor an Athenz-Role-Auth header are cached:
// then the caller depends on nothing but the source principal, the certificate and the
// mapping the wrapped source was built for (one cache per source, so a mapping change
// starts empty). Credential errors for a peer are remembered too: they are as
// deterministic. It is safe for concurrent use.
type peerCachingCallers struct {
	next  CallerSource
	cache *lru.Cache[peerKey, peerAnswer]
}

type peerKey struct{ principal, certificate string }

type peerAnswer struct {
	caller Caller
	err    *CredentialError
}

func newPeerCachingCallers(next CallerSource) CallerSource {
	c, err := lru.New[peerKey, peerAnswer](peerCacheSize)
	if err != nil {
		return next // only for a non-positive size
	}
	return &peerCachingCallers{next: next, cache: c}
}

// Authenticate implements CallerSource.
func (p *peerCachingCallers) Authenticate(ctx context.Context, in *Input) (Caller, error) {
	if in == nil || in.SourceCertificate == "" && in.SourcePrincipal == "" {
		return p.next.Authenticate(ctx, in)
	}
	if _, ok := in.Headers[headerAuthorization]; ok {
		return p.next.Authenticate(ctx, in)
	}
	if _, ok := in.Headers[headerRoleToken]; ok {
		return p.next.Authenticate(ctx, in)
	}
	key := peerKey{in.SourcePrincipal, in.SourceCertificate}
	if a, ok := p.cache.Get(key); ok {
		if a.err != nil {
			return Caller{}, a.err
		}
		return a.caller, nil
	}
	c, err := p.next.Authenticate(ctx, in)
	var ce *CredentialError
	// The request's strings may be substrings of the whole request (reqDecoder):
	// what the cache keeps is cloned so that it keeps only itself.
	key = peerKey{strings.Clone(key.principal), strings.Clone(key.certificate)}
	switch {
	case err == nil:
		p.cache.Add(key, peerAnswer{caller: c.clone()})
	case errors.As(err, &ce):
		p.cache.Add(key, peerAnswer{err: ce.clone()})
	}
	return c, err
}

// clone is c with every string copied, so that it keeps no request alive.
func (c Caller) clone() Caller {
	c.Principal, c.TokenDomain, c.Source = strings.Clone(c.Principal), strings.Clone(c.TokenDomain), strings.Clone(c.Source)
	if c.Roles != nil {
		roles := make([]string, len(c.Roles))
		for i, r := range c.Roles {
			roles[i] = strings.Clone(r)
		}
		c.Roles = roles
	}
	return c
}

// clone is e with its strings copied and its cause reduced to its message, which is all
// the cache reports: a wrapped error may hold a slice of the request.
func (e *CredentialError) clone() *CredentialError {
	c := &CredentialError{Reason: strings.Clone(e.Reason), Source: strings.Clone(e.Source)}
	if e.Err != nil {
		c.Err = errors.New(strings.Clone(e.Err.Error()))
	}
	return c
}
