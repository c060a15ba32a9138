package policy

import (
	"crypto"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// PublicKeys looks up the ZTS public keys that sign policy data, by key id.
type PublicKeys interface {
	// PublicKey returns the key named keyID, and false when there is none.
	PublicKey(keyID string) (crypto.PublicKey, bool)
}

// KeyMap is a PublicKeys held in a map from key id to key. An empty (or nil) KeyMap knows
// no key, so every signed file it is asked to verify is refused.
type KeyMap map[string]crypto.PublicKey

// PublicKey returns m[keyID].
func (m KeyMap) PublicKey(keyID string) (crypto.PublicKey, bool) {
	k, ok := m[keyID]
	return k, ok
}

// ignoredPolPolicy lists the ZTS policy fields that are accepted and dropped. A ZTS
// policy's version and active fields are decoded only to be refused: the ZTS signature
// does not cover them, so honouring them would let anyone who can edit the file switch
// policies off.
var ignoredPolPolicy = words("casesensitive")

// ParseSignedPolicyData parses a .pol file: a ZTS DomainSignedPolicyData document
// ({"signedPolicyData": {...}, "keyId", "signature"}) as zpe-updater stores it. The result
// is a PolicyOnly domain: its name, modification time and policies, no roles, groups or
// services. file names the input in problems and becomes the domain's Source.
//
// With keys non-nil the ZTS signature over the canonical signedPolicyData must verify
// with the key named by keyId (an unknown key id is a problem); with keys nil (the nil
// interface; a nil KeyMap is a key set with no keys) the file loads unverified. Expired data (expires before now) is refused either way. Policies
// are validated and normalised as in ParseDomain; the fields the signature does not
// cover (policy version and active) are refused. zpe-updater's JWS format is not read.
// Any problem makes ParseSignedPolicyData return nil and a *LoadError.
func ParseSignedPolicyData(file string, data []byte, keys PublicKeys) (*Domain, error) {
	dom, _, probs := parseSignedPolicyFile(file, data, LoadOptions{ZTSKeys: keys})
	if len(probs) > 0 {
		return nil, &LoadError{Problems: probs}
	}
	return dom, nil
}

// polDocument is a decoded .pol file with the nodes that problems point at.
type polDocument struct {
	doc                   athenz.DomainSignedPolicyData
	dom                   *Domain
	root, spd, keyID, sig *yaml.Node
	hasPolicyData         bool
}

func parseSignedPolicyFile(file string, data []byte, opts LoadOptions) (*Domain, positions, []Problem) {
	if len(data) > MaxFileSize {
		return nil, nil, []Problem{{File: file, Message: tooBig(int64(len(data))).Error()}}
	}
	d := newDecoder(file)
	if !d.jsonSyntax(data) {
		return nil, nil, d.probs
	}
	root := d.parseTree(data)
	if root == nil {
		return nil, nil, sortProblems(d.probs)
	}
	pol := d.polFile(root)
	if pol == nil {
		return nil, nil, sortProblems(d.probs)
	}
	if len(d.probs) == 0 {
		d.checkSignedPolicy(pol, opts)
	}
	d.probs = append(d.probs, validate(pol.dom, d.pos, file)...)
	if len(d.probs) > 0 {
		return nil, nil, sortProblems(d.probs)
	}
	pol.dom.Source = file
	normalize(pol.dom)
	return pol.dom, d.pos, nil
}

// checkSignedPolicy checks expiry and, when keys are given, the ZTS signature.
func (d *decoder) checkSignedPolicy(pol *polDocument, opts LoadOptions) {
	spd := &pol.doc.SignedPolicyData
	if exp := spd.Expires; !exp.IsZero() && opts.now().After(exp.Time) {
		d.problem(pol.spd, "signed policy data expired at %s", exp)
	}
	if opts.ZTSKeys == nil {
		return
	}
	at := pol.keyID
	if at == nil {
		at = pol.root
	}
	if pol.doc.KeyID == "" {
		d.problem(at, "no keyId: cannot verify the ZTS signature")
		return
	}
	key, ok := opts.ZTSKeys.PublicKey(pol.doc.KeyID)
	if !ok {
		d.problem(at, "unknown ZTS key id %q", pol.doc.KeyID)
		return
	}
	if err := pol.doc.Verify(key); err != nil {
		if pol.sig != nil {
			at = pol.sig
		}
		d.problem(at, "ZTS signature does not verify: %v", err)
	}
}

func (d *decoder) polFile(root *yaml.Node) *polDocument {
	if root.Kind == yaml.MappingNode {
		for i := 0; i < len(root.Content); i += 2 {
			if k := strings.ToLower(root.Content[i].Value); k == "payload" || k == "protected" {
				d.problem(root.Content[i], "JWS signed policy data is not supported: run zpe-updater without JWS policy support")
				return nil
			}
		}
	}
	pol := &polDocument{root: root}
	ok := d.fields(root, "signed policy file", nil, func(key string, v *yaml.Node) bool {
		switch key {
		case "signedpolicydata":
			pol.spd = v
			d.signedPolicyData(v, pol)
		case "keyid":
			pol.keyID = v
			pol.doc.KeyID = d.str(v, "keyId")
		case "signature":
			pol.sig = v
			pol.doc.Signature = d.str(v, "signature")
		default:
			return false
		}
		return true
	})
	if !ok {
		d.wrongType(root, "signed policy file", "a mapping (ZTS DomainSignedPolicyData)")
		return nil
	}
	if pol.dom == nil {
		if len(d.probs) == 0 {
			d.problem(root, "no signedPolicyData")
		}
		return nil
	}
	if !pol.hasPolicyData {
		d.problem(pol.spd, "signedPolicyData has no policyData")
	}
	spd := &pol.doc.SignedPolicyData
	if spd.Modified.IsZero() || spd.Expires.IsZero() {
		d.problem(pol.spd, "signedPolicyData needs both modified and expires")
	}
	return pol
}

// signedPolicyData decodes signedPolicyData into both the ZTS form (whose canonical JSON
// the signature covers) and the domain, from the same decoded values, so that what is
// verified is exactly what is loaded.
func (d *decoder) signedPolicyData(n *yaml.Node, pol *polDocument) {
	spd := &pol.doc.SignedPolicyData
	dom := &Domain{PolicyOnly: true}
	contents := &DomainPolicies{}
	ok := d.object(n, "signedPolicyData", dom, nil, func(key string, v *yaml.Node) bool {
		switch key {
		case "policydata":
			pol.hasPolicyData = true
			d.object(v, "policyData", contents, nil, func(key string, v *yaml.Node) bool {
				switch key {
				case "domain":
					dom.Name = d.field(dom, "name", v, "policyData domain")
					contents.Domain = dom.Name
				case "policies":
					d.list(v, "policies", func(_ int, item *yaml.Node) {
						contents.Policies = appendIf(contents.Policies, d.policy(item, ignoredPolPolicy))
					})
				default:
					return false
				}
				return true
			})
		case "zmssignature":
			spd.ZMSSignature = d.str(v, "zmsSignature")
		case "zmskeyid":
			spd.ZMSKeyID = d.str(v, "zmsKeyId")
		case "modified":
			d.modified(v, "signedPolicyData", &spd.Modified)
		case "expires":
			if t := d.timestamp(v, "signedPolicyData expires"); t != nil {
				spd.Expires = *t
			}
		default:
			return false
		}
		return true
	})
	if !ok {
		return
	}
	dom.Modified = spd.Modified
	dom.Policies = &SignedPolicies{Contents: contents}
	pol.dom = dom
	spd.PolicyData = athenz.PolicyData{Domain: contents.Domain}
	for _, p := range contents.Policies {
		if p.Version != "" || p.Active != nil {
			d.problemAt(d.pos.at(p, "", -1), "policy %q: version and active are not covered by the ZTS signature and are not accepted in signed policy data", p.Name)
		}
		sp := athenz.SignedPolicy{Name: p.Name, Modified: p.Modified}
		for _, a := range p.Assertions {
			sp.Assertions = append(sp.Assertions, athenz.SignedAssertion{
				Role: a.Role, Resource: a.Resource, Action: a.Action, Effect: string(a.Effect), ID: a.ID,
			})
		}
		spd.PolicyData.Policies = append(spd.PolicyData.Policies, sp)
	}
}
