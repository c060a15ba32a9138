package issuer

import (
	"net/http"
)

// handleSignedPolicyData is GET /domain/{domain}/signed_policy_data (zpe-updater,
// athenz-authorizer): the domain's active policies signed with the ZTS key over the
// canonical signedPolicyData, with a ZMS-key signature over the canonical policyData
// inside, valid for Tokens.PolicyExpiry. The ETag is the quoted signedPolicyData.modified
// (zpe-updater rebuilds it from that field); If-None-Match equal to it gives 304, an
// empty If-None-Match counts as absent. No credentials needed.
func (s *Server) handleSignedPolicyData(w http.ResponseWriter, r *http.Request) error {
	domain, err := checkDomain(r.PathValue("domain"), "domain")
	if err != nil {
		return err
	}
	info(r).domain = domain
	snap := s.snap()
	if !snap.hasDomain(domain) {
		return notFound("domain %q not found", domain)
	}
	e, err := s.signedPolicy(snap, domain)
	if err != nil {
		return internal("signing policy data", err)
	}
	w.Header().Set("ETag", e.etag)
	if inm := ifNoneMatch(r.Header.Get("If-None-Match")); inm != "" && inm == e.etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.body)
	return nil
}
