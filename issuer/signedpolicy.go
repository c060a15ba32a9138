package issuer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// signedEntry is a domain's signed policy data, signed once and served until it is a
// seventh of its validity old (a day, by default), so that the expiry clients see is
// always at least six days ahead.
type signedEntry struct {
	body     []byte // the JSON response
	etag     string // quoted signedPolicyData.modified
	signedAt time.Time
}

// policyData returns a domain's active policies in the signed form: name, modified and
// assertions (role, resource, action, effect), no ids, effects always spelled out. The
// loader keeps only active policy versions, so every policy here is active.
func policyData(d *policy.Domain, withIDs bool) athenz.PolicyData {
	pd := athenz.PolicyData{Domain: d.Name}
	if d.Policies == nil || d.Policies.Contents == nil {
		return pd
	}
	for _, p := range d.Policies.Contents.Policies {
		if p.Active != nil && !*p.Active {
			continue
		}
		sp := athenz.SignedPolicy{Name: p.Name, Modified: p.Modified}
		for _, a := range p.Assertions {
			effect := athenz.EffectAllow
			if a.Effect == policy.Deny {
				effect = athenz.EffectDeny
			}
			sa := athenz.SignedAssertion{Role: a.Role, Resource: a.Resource, Action: a.Action, Effect: effect}
			if withIDs {
				sa.ID = a.ID
			}
			sp.Assertions = append(sp.Assertions, sa)
		}
		pd.Policies = append(pd.Policies, sp)
	}
	return pd
}

// signedPolicy returns the domain's signed policy data from the snapshot's cache, signing
// it when missing or old. The caller has checked that the domain is loaded.
func (s *Server) signedPolicy(snap *snapshot, domain string) (*signedEntry, error) {
	now := s.now()
	refresh := s.cfg.Tokens.PolicyExpiry / 7
	snap.signedMu.Lock()
	defer snap.signedMu.Unlock()
	if e := snap.signed[domain]; e != nil && now.Sub(e.signedAt) < refresh {
		return e, nil
	}
	modified := snap.modified[domain]
	spd := athenz.SignedPolicyData{
		PolicyData: policyData(snap.domains[domain], false),
		Modified:   modified,
		Expires:    athenz.NewTimestamp(now.Add(s.cfg.Tokens.PolicyExpiry)),
	}
	if err := spd.SignZMS(s.zmsKey.signer, s.zmsKey.id); err != nil {
		return nil, fmt.Errorf("sign policy data of %s: %w", domain, err)
	}
	doc, err := spd.Sign(s.ztsKey.signer, s.ztsKey.id)
	if err != nil {
		return nil, fmt.Errorf("sign policy data of %s: %w", domain, err)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode policy data of %s: %w", domain, err)
	}
	e := &signedEntry{body: body, etag: `"` + modified.String() + `"`, signedAt: now}
	snap.signed[domain] = e
	return e, nil
}

// ifNoneMatch returns the request's If-None-Match, "" when absent or empty (the Go ZTS
// client always sends the header, empty when it has no ETag).
func ifNoneMatch(h string) string {
	if h == "" || h == `""` {
		return ""
	}
	return h
}
