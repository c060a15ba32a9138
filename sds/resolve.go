package sds

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"google.golang.org/protobuf/types/known/anypb"
)

// resStatus is what became of one requested resource name.
type resStatus uint8

const (
	// statusReady: served, with version and secret set.
	statusReady resStatus = iota
	// statusPending: the peer may have it but the cache does not yet (the first
	// certificate is being issued, or an identity went away); nothing is sent for it and
	// the stream is woken when it arrives.
	statusPending
	// statusLeftOut: refused (unknown name, peer not entitled, cannot be built); left out
	// of every response and logged with the reason.
	statusLeftOut
)

// Reasons a name is left out, also the values of the left_out_total metric label.
const (
	reasonUnknown     = "unknown_name"
	reasonNotEntitled = "not_entitled"
	reasonUnservable  = "unservable"
)

// resolution is one requested name, resolved against a peer's grant and the cache.
type resolution struct {
	name    string
	status  resStatus
	version string     // xDS resource version (content digest), when ready
	secret  *anypb.Any // when ready
	reason  string     // metric label, when left out
	why     string     // human reason, when left out or pending
}

// interest collects what a stream must follow in the cache to hear about changes to the
// names it resolved.
type interest struct {
	ids    []string
	bundle bool
}

func (in *interest) follow(id string) {
	if !slices.Contains(in.ids, id) {
		in.ids = append(in.ids, id)
	}
}

// peerGrant is a Grant as a stream holds it: pending is true while the Authorizer could
// not decide (the stream retries).
type peerGrant struct {
	Grant
	pending bool
}

func (g *peerGrant) entitled(id string) bool { return slices.Contains(g.Identities, id) }

// resolve resolves one name for a peer. It reads the cache and the memo, never blocks on
// I/O, and records in in what the answer depends on.
func (s *sdsService) resolve(g *peerGrant, name string, in *interest) resolution {
	rn := parseResourceName(name)
	r := resolution{name: name}
	leftOut := func(reason, why string) resolution {
		r.status, r.reason, r.why = statusLeftOut, reason, why
		return r
	}
	pending := func(why string) resolution {
		r.status, r.why = statusPending, why
		return r
	}
	ready := func(version string, secret *anypb.Any, err error) resolution {
		if err != nil {
			return leftOut(reasonUnservable, err.Error())
		}
		r.status, r.version, r.secret = statusReady, version, secret
		return r
	}

	if rn.kind == kindUnknown {
		return leftOut(reasonUnknown, rn.why)
	}
	if rn.kind.isBundle() {
		in.bundle = true
		b, ok := s.cache.Bundle()
		if !ok {
			return pending("no trust bundle yet")
		}
		spiffe, tds := s.validation(rn, b)
		a, err := s.memo.get(memoKey{name, "bundle"}, b.Version, func() (*anypb.Any, error) {
			return validationSecret(name, b, spiffe, tds)
		})
		// The resource version names the encoding too: an agent restarted with another
		// validation mode must not tell a reconnecting delta client that its copy, in
		// the old encoding, is current.
		version := b.Digest + ".ca"
		if spiffe {
			version = b.Digest + ".spiffe"
		}
		return ready(version, a, err)
	}
	if g.pending {
		return pending("peer authorization pending")
	}
	if len(g.Identities) == 0 {
		return leftOut(reasonNotEntitled, "peer is entitled to no identity: "+g.Reason)
	}

	switch rn.kind {
	case kindDefault, kindService:
		id := g.Identities[0]
		if rn.kind == kindService {
			if !g.entitled(rn.principal) {
				// A namespaced name whose service account has a dot (Kubernetes allows
				// "api.v2") reads as <domain>.<service>; it is still served when an
				// entitled certificate carries exactly this SPIFFE ID. The stream
				// follows the entitled identities, so the name is looked at again
				// when one of them changes.
				if e, id, _ := s.bySpiffeID(g, name, in); e != nil {
					return s.credential(name, "id:"+id, e, ready)
				}
				return leftOut(reasonNotEntitled, fmt.Sprintf("peer is not entitled to %s (entitled: %v)", rn.principal, g.Identities))
			}
			id = rn.principal
		}
		in.follow(id)
		e, ok := s.cache.Identity(id)
		if !ok {
			return pending("no certificate for " + id + " yet")
		}
		return s.credential(name, "id:"+id, e, ready)
	case kindIstio:
		// An Istio-form ID names a service account, not an Athenz service: serve the
		// entitled identity whose certificate carries exactly this SPIFFE ID.
		e, id, missing := s.bySpiffeID(g, name, in)
		if e != nil {
			return s.credential(name, "id:"+id, e, ready)
		}
		if missing {
			return pending("waiting for the certificates of " + fmt.Sprint(g.Identities))
		}
		return leftOut(reasonNotEntitled, fmt.Sprintf("no certificate of the peer's identities %v has this SPIFFE ID", g.Identities))
	case kindRole:
		for _, id := range g.Identities {
			in.follow(id)
		}
		for _, id := range g.Identities {
			if e, ok := s.cache.RoleCert(id, rn.roleDomain, rn.role); ok {
				return s.credential(name, "role:"+id+"\x00"+rn.roleDomain+"\x00"+rn.role, e, ready)
			}
		}
		return pending(fmt.Sprintf("no role certificate for %s:role.%s yet", rn.roleDomain, rn.role))
	}
	return leftOut(reasonUnknown, "unsupported resource name")
}

// bySpiffeID returns the entry, among the peer's identities, whose certificate carries
// exactly the SPIFFE ID spiffeID, and follows them all. missing reports that some of them
// have no certificate yet, so the answer may change.
func (s *sdsService) bySpiffeID(g *peerGrant, spiffeID string, in *interest) (e *CredentialEntry, id string, missing bool) {
	for _, id := range g.Identities {
		in.follow(id)
	}
	for _, id := range g.Identities {
		e, ok := s.cache.Identity(id)
		if !ok {
			missing = true
		} else if e.SpiffeID == spiffeID {
			return e, id, missing
		}
	}
	return nil, "", missing
}

func (s *sdsService) credential(name, src string, e *CredentialEntry, ready func(string, *anypb.Any, error) resolution) resolution {
	a, err := s.memo.get(memoKey{name, src}, e.Version, func() (*anypb.Any, error) {
		return tlsCertificateSecret(name, e)
	})
	return ready(e.Digest, a, err)
}

// validation says how to write a validation context for a bundle name: SPIFFE validator
// or not, and with which trust domains.
func (s *sdsService) validation(rn resourceName, b *BundleEntry) (spiffe bool, trustDomains []string) {
	switch s.mode {
	case ValidationTrustedCA:
		return false, nil
	case ValidationAuto:
		if rn.kind == kindRootCA {
			return false, nil
		}
	}
	if rn.kind == kindSIACA {
		trustDomains = append(trustDomains, rn.trustDomain)
	}
	for _, td := range b.TrustDomains {
		if !slices.Contains(trustDomains, td) {
			trustDomains = append(trustDomains, td)
		}
	}
	return true, trustDomains
}

// resolveAll resolves names (in the order given) and returns them with what they depend
// on.
func (s *sdsService) resolveAll(g *peerGrant, names []string) ([]resolution, interest) {
	var in interest
	out := make([]resolution, 0, len(names))
	for _, n := range names {
		out = append(out, s.resolve(g, n, &in))
	}
	return out, in
}

// sotwVersion is the version_info of a state-of-the-world response: a hash of the names
// and resource versions it carries, so that the same content always gets the same
// version (across streams and agent restarts) and different content a different one.
func sotwVersion(rs []resolution) string {
	h := fnv.New64a()
	for _, r := range rs {
		if r.status != statusReady {
			continue
		}
		h.Write([]byte(r.name))
		h.Write([]byte{0})
		h.Write([]byte(r.version))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 16)
}
