package issuer

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// jwsSignedPolicyData is the JWS payload: SignedPolicyData with empty ZMS signature
// fields, and, when versions were requested, policy versions and assertion ids.
type jwsSignedPolicyData struct {
	PolicyData   jwsPolicyData    `json:"policyData"`
	ZMSSignature string           `json:"zmsSignature"`
	ZMSKeyID     string           `json:"zmsKeyId"`
	Modified     athenz.Timestamp `json:"modified"`
	Expires      athenz.Timestamp `json:"expires"`
}

type jwsPolicyData struct {
	Domain   string      `json:"domain"`
	Policies []jwsPolicy `json:"policies"`
}

type jwsPolicy struct {
	Name       string                   `json:"name"`
	Modified   *athenz.Timestamp        `json:"modified,omitempty"`
	Assertions []athenz.SignedAssertion `json:"assertions"`
	Version    string                   `json:"version,omitempty"`
	Active     *bool                    `json:"active,omitempty"`
}

// handleJWSPolicyData is POST /domain/{domain}/policy/signed (zpe-updater with
// jwsPolicySupport): the domain's policies as a flattened JWS signed with the ZTS key
// (ES256 raw R||S when signatureP1363Format, as go-jose needs; RS256 for RSA keys), ETag
// and 304 as for signed_policy_data. policyVersions may name a policy (with or without
// the "<domain>:policy." prefix) and a version; the loader keeps only the active version
// of each policy, so a listed version must be the active one (else 404). With versions
// requested, policies carry version and active and assertions their ids.
func (s *Server) handleJWSPolicyData(w http.ResponseWriter, r *http.Request) error {
	domain, err := checkDomain(r.PathValue("domain"), "domain")
	if err != nil {
		return err
	}
	info(r).domain = domain
	var req SignedPolicyRequest
	if err := decodeBody(w, r, s.cfg.Listen.MaxBodyBytes, &req); err != nil {
		return err
	}
	snap := s.snap()
	d := snap.domains[domain]
	if d == nil {
		return notFound("domain %q not found", domain)
	}
	etag := `"` + snap.modified[domain].String() + `"`
	w.Header().Set("ETag", etag)
	if inm := ifNoneMatch(r.Header.Get("If-None-Match")); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	pd, err := jwsPolicies(d, req.PolicyVersions)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(jwsSignedPolicyData{
		PolicyData: pd, Modified: snap.modified[domain],
		Expires: athenz.NewTimestamp(s.now().Add(s.cfg.Tokens.PolicyExpiry)),
	})
	if err != nil {
		return internal("encoding policy data", err)
	}
	h64, p64, sig, err := signPolicyJWS(s.ztsKey, payload, req.SignatureP1363Format)
	if err != nil {
		return internal("signing policy data", err)
	}
	writeJSON(w, http.StatusOK, JWSPolicyData{
		Payload: p64, Protected: h64, Header: map[string]string{"kid": s.ztsKey.id},
		Signature: sig,
	})
	return nil
}

// jwsPolicies lists the domain's active policies, checking requested versions.
func jwsPolicies(d *policy.Domain, versions map[string]string) (jwsPolicyData, error) {
	want := make(map[string]string, len(versions))
	for name, v := range versions {
		name = strings.ToLower(name)
		if !strings.Contains(name, ":policy.") {
			name = athenz.JoinPolicyName(d.Name, name)
		}
		want[name] = v
	}
	withVersions := len(want) > 0
	pd := policyData(d, withVersions)
	out := jwsPolicyData{Domain: d.Name, Policies: []jwsPolicy{}}
	loaded := map[string]*policy.Policy{}
	if d.Policies != nil && d.Policies.Contents != nil {
		for _, p := range d.Policies.Contents.Policies {
			loaded[strings.ToLower(p.Name)] = p
		}
	}
	for name, v := range want {
		p := loaded[name]
		if p == nil || (v != "" && !strings.EqualFold(p.Version, v) && !(p.Version == "" && v == "0")) {
			return out, notFound("policy %s version %q is not the active version of a loaded policy", name, v)
		}
	}
	active := true
	for _, sp := range pd.Policies {
		jp := jwsPolicy{Name: sp.Name, Assertions: sp.Assertions}
		if jp.Assertions == nil {
			jp.Assertions = []athenz.SignedAssertion{}
		}
		if !sp.Modified.IsZero() {
			m := sp.Modified
			jp.Modified = &m
		}
		if withVersions {
			if p := loaded[strings.ToLower(sp.Name)]; p != nil {
				jp.Version = p.Version
			}
			jp.Active = &active
		}
		out.Policies = append(out.Policies, jp)
	}
	return out, nil
}
