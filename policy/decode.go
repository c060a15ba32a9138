package policy

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// This file is the strict decoder shared by domain files and .pol files: the input is
// parsed by yaml.v3 into a node tree (JSON is YAML, and nodes carry line and column),
// then walked by hand so that keys match case-insensitively (zms-cli -o yaml writes
// "rolemembers", the ZMS API "roleMembers"), unknown keys and wrong types become
// Problems with positions, and every decoded value's position is kept for validation.

// decoder walks a node tree, collecting Problems and positions.
type decoder struct {
	file  string
	probs []Problem
	pos   positions
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: make(positions)}
}

// problem reports a problem at node n (nil: the file as a whole).
func (d *decoder) problem(n *yaml.Node, format string, args ...any) {
	var s spot
	if n != nil {
		s = spot{line: n.Line, col: n.Column}
	}
	d.problemAt(s, format, args...)
}

func (d *decoder) problemAt(s spot, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: s.line, Column: s.col, Message: fmt.Sprintf(format, args...)})
}

// mark records where obj's field (or, with field "", obj itself) came from.
func (d *decoder) mark(obj any, field string, n *yaml.Node) {
	d.pos[fieldKey{obj, field, -1}] = spot{line: n.Line, col: n.Column}
}

// describe names a node's type for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	}
	return "a value tagged " + n.Tag
}

// present reports whether n holds a value: null counts as absent, as the Athenz clients
// read it (ZMS and hand-written files use null for unset fields). Aliases are refused: no
// export uses them, and following them invites exponential expansion.
func (d *decoder) present(n *yaml.Node) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		d.problem(n, "YAML aliases are not supported")
		return false
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return false
	}
	return true
}

func (d *decoder) wrongType(n *yaml.Node, what, want string) {
	hint := ""
	if want == "a string" && n.Kind == yaml.ScalarNode {
		hint = " (quote it)"
	}
	d.problem(n, "%s: want %s, got %s%s", what, want, describe(n), hint)
}

// fields walks the mapping n. For each key it calls set with the key lower-cased; set
// returns false for keys it does not decode, which are accepted unread when listed in
// ignored and reported otherwise. It returns false when n is absent or not a mapping.
func (d *decoder) fields(n *yaml.Node, what string, ignored map[string]bool, set func(key string, v *yaml.Node) bool) bool {
	if !d.present(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, what, "a mapping")
		return false
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.problem(k, "%s: field names must be strings, got %s", what, describe(k))
			continue
		}
		key := strings.ToLower(k.Value)
		if prev, dup := seen[key]; dup {
			d.problem(k, "%s: field %q repeats %q from line %d", what, k.Value, prev.Value, prev.Line)
			continue
		}
		seen[key] = k
		if !set(key, v) && !ignored[key] {
			d.problem(k, "unknown field %q in %s", k.Value, what)
		}
	}
	return true
}

// list calls each for every element of the sequence n. Null elements are reported.
func (d *decoder) list(n *yaml.Node, what string, each func(i int, item *yaml.Node)) {
	if !d.present(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.wrongType(n, what, "a list")
		return
	}
	for i, item := range n.Content {
		if item.Kind == yaml.ScalarNode && item.ShortTag() == "!!null" {
			d.problem(item, "%s: entry %d is null", what, i+1)
			continue
		}
		each(i, item)
	}
}

func (d *decoder) str(n *yaml.Node, what string) string {
	if !d.present(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.wrongType(n, what, "a string")
		return ""
	}
	return n.Value
}

// timestamp decodes an RDL timestamp; YAML may leave it unquoted (tag !!timestamp).
func (d *decoder) timestamp(n *yaml.Node, what string) *athenz.Timestamp {
	if !d.present(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!timestamp") {
		d.wrongType(n, what, "a timestamp string")
		return nil
	}
	t, err := athenz.ParseTimestamp(n.Value)
	if err != nil {
		d.problem(n, "%s: malformed %v", what, err)
		return nil
	}
	return &t
}

func (d *decoder) integer(n *yaml.Node, what string, bits int) int64 {
	if !d.present(n) {
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.wrongType(n, what, "an integer")
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 0, bits)
	if err != nil {
		d.problem(n, "%s: %q is not a %d-bit integer", what, n.Value, bits)
		return 0
	}
	return v
}

func (d *decoder) boolean(n *yaml.Node, what string) *bool {
	if !d.present(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.wrongType(n, what, "a boolean")
		return nil
	}
	b := strings.EqualFold(n.Value, "true")
	return &b
}

// words turns a space-separated list of lower-case field names into a set.
func words(s string) map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// The DomainData fields (lower-cased) that ZMS exports and that do not affect decisions:
// accepted with any value and dropped, so that a real export loads unchanged. A test holds
// these lists complete against the ZMS client structs.
var (
	ignoredSignedDomain = words("signature keyid")
	ignoredDomain       = words(`description org enabled auditenabled account ypmid applicationid
		certdnsdomain memberexpirydays
		signalgorithm serviceexpirydays groupexpirydays userauthorityfilter azuresubscription
		azuretenant azureclient gcpproject gcpprojectnumber tags businessservice
		memberpurgeexpirydays productid featureflags contacts environment resourceownership
		x509certsignerkeyid sshcertsignerkeyid slackchannel entities`)
	ignoredRole = words(`selfserve memberexpirydays signalgorithm
		serviceexpirydays memberreviewdays servicereviewdays reviewenabled notifyroles
		userauthorityfilter userauthorityexpiration groupexpirydays groupreviewdays tags
		description auditenabled deleteprotection lastrevieweddate selfrenew selfrenewmins
		maxmembers resourceownership principaldomainfilter notifydetails auditlog`)
	ignoredRoleMember = words(`reviewreminder active approved auditref requesttime
		lastnotifiedtime requestprincipal reviewlastnotifiedtime principaltype pendingstate`)
	ignoredGroup = words(`selfserve reviewenabled notifyroles userauthorityfilter
		userauthorityexpiration memberexpirydays serviceexpirydays tags auditenabled
		deleteprotection lastrevieweddate selfrenew selfrenewmins maxmembers resourceownership
		principaldomainfilter notifydetails auditlog`)
	ignoredGroupMember = words(`groupname domainname active approved auditref requesttime
		lastnotifiedtime requestprincipal reviewlastnotifiedtime principaltype pendingstate
		notifyroles notifydetails`)
	ignoredSignedPolicies = words("signature keyid")
	ignoredPolicy         = words("casesensitive description tags resourceownership")
	ignoredAssertion      = words("casesensitive conditions")
	ignoredService        = words(`description executable user group tags resourceownership
		x509certsignerkeyid sshcertsignerkeyid creds`)
)

// object decodes the mapping n into obj through fields and records obj's position. It
// returns false when n is absent (null) or not a mapping.
func (d *decoder) object(n *yaml.Node, what string, obj any, ignored map[string]bool, set func(key string, v *yaml.Node) bool) bool {
	if !d.fields(n, what, ignored, set) {
		return false
	}
	d.mark(obj, "", n)
	return true
}

// field decodes a string field and records its position under name, flagged bad when
// the value had the wrong type (so validation does not report it a second time).
func (d *decoder) field(obj any, name string, v *yaml.Node, what string) string {
	return d.fieldAt(obj, name, -1, v, what)
}

func (d *decoder) fieldAt(obj any, name string, index int, v *yaml.Node, what string) string {
	before := len(d.probs)
	s := d.str(v, what)
	d.pos[fieldKey{obj, name, index}] = spot{v.Line, v.Column, len(d.probs) > before}
	return s
}

// expiryMins decodes a 32-bit expiry limit in minutes and records its position under
// name, flagged bad when the decoder reported it (so validation does not repeat that).
func (d *decoder) expiryMins(obj any, name string, v *yaml.Node, what string) int32 {
	before := len(d.probs)
	m := int32(d.integer(v, what, 32))
	d.pos[fieldKey{obj, name, -1}] = spot{v.Line, v.Column, len(d.probs) > before}
	return m
}

// modified decodes an optional "modified" timestamp into dst.
func (d *decoder) modified(v *yaml.Node, what string, dst *athenz.Timestamp) {
	if t := d.timestamp(v, what+" modified"); t != nil {
		*dst = *t
	}
}

// appendIf appends v unless it is nil (an entry that failed to decode).
func appendIf[T any](s []*T, v *T) []*T {
	if v == nil {
		return s
	}
	return append(s, v)
}

// domainDocument decodes a domain file's root: a ZMS DomainData, or a SignedDomain
// ({"domain": DomainData, "signature", "keyId"}) as ZTS keeps one per domain in its local
// store (ZMSFileChangeLogStore). The SignedDomain signature is not checked.
func (d *decoder) domainDocument(root *yaml.Node) *Domain {
	if root.Kind != yaml.MappingNode {
		d.wrongType(root, "domain file", "a mapping (a ZMS DomainData document)")
		return nil
	}
	wrapped := false
	for i := 0; i < len(root.Content); i += 2 {
		wrapped = wrapped || strings.EqualFold(root.Content[i].Value, "domain")
	}
	if !wrapped {
		return d.domain(root)
	}
	var dom *Domain
	d.fields(root, "signed domain", ignoredSignedDomain, func(key string, v *yaml.Node) bool {
		if key != "domain" {
			return false
		}
		dom = d.domain(v)
		return true
	})
	return dom
}

func (d *decoder) domain(n *yaml.Node) *Domain {
	dom := &Domain{}
	ok := d.object(n, "domain", dom, ignoredDomain, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			dom.Name = d.field(dom, "name", v, "domain name")
		case "modified":
			d.modified(v, "domain", &dom.Modified)
		case "roles":
			d.list(v, "roles", func(_ int, item *yaml.Node) { dom.Roles = appendIf(dom.Roles, d.role(item)) })
		case "groups":
			d.list(v, "groups", func(_ int, item *yaml.Node) { dom.Groups = appendIf(dom.Groups, d.group(item)) })
		case "policies":
			dom.Policies = d.signedPolicies(v)
		case "services":
			d.list(v, "services", func(_ int, item *yaml.Node) { dom.Services = appendIf(dom.Services, d.service(item)) })
		case "servicecertexpirymins":
			dom.ServiceCertExpiryMins = d.expiryMins(dom, "serviceCertExpiryMins", v, "domain serviceCertExpiryMins")
		case "rolecertexpirymins":
			dom.RoleCertExpiryMins = d.expiryMins(dom, "roleCertExpiryMins", v, "domain roleCertExpiryMins")
		case "tokenexpirymins":
			dom.TokenExpiryMins = d.expiryMins(dom, "tokenExpiryMins", v, "domain tokenExpiryMins")
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return dom
}

func (d *decoder) role(n *yaml.Node) *Role {
	r := &Role{}
	ok := d.object(n, "role", r, ignoredRole, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			r.Name = d.field(r, "name", v, "role name")
		case "modified":
			d.modified(v, "role", &r.Modified)
		case "trust":
			r.Trust = d.field(r, "trust", v, "role trust")
		case "members":
			d.mark(r, "members", v)
			d.list(v, "role members", func(_ int, item *yaml.Node) {
				r.Members = append(r.Members, d.fieldAt(r, "members", len(r.Members), item, "role member"))
			})
		case "rolemembers":
			d.mark(r, "roleMembers", v)
			d.list(v, "role members", func(_ int, item *yaml.Node) {
				m := &RoleMember{}
				if d.member(item, "role member", ignoredRoleMember, m, &m.MemberName, &m.Expiration, &m.SystemDisabled) {
					r.RoleMembers = append(r.RoleMembers, m)
				}
			})
		case "certexpirymins":
			r.CertExpiryMins = d.expiryMins(r, "certExpiryMins", v, "role certExpiryMins")
		case "tokenexpirymins":
			r.TokenExpiryMins = d.expiryMins(r, "tokenExpiryMins", v, "role tokenExpiryMins")
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return r
}

// member decodes a role or group member (they share their decision fields) into the
// destinations given, recording positions under obj.
func (d *decoder) member(n *yaml.Node, what string, ignored map[string]bool, obj any, name *string, exp **athenz.Timestamp, disabled *int32) bool {
	return d.object(n, what, obj, ignored, func(key string, v *yaml.Node) bool {
		switch key {
		case "membername":
			*name = d.field(obj, "memberName", v, "member name")
		case "expiration":
			*exp = d.timestamp(v, "member expiration")
		case "systemdisabled":
			*disabled = int32(d.integer(v, "member systemDisabled", 32))
		default:
			return false
		}
		return true
	})
}

func (d *decoder) group(n *yaml.Node) *Group {
	g := &Group{}
	ok := d.object(n, "group", g, ignoredGroup, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			g.Name = d.field(g, "name", v, "group name")
		case "modified":
			d.modified(v, "group", &g.Modified)
		case "groupmembers":
			d.list(v, "group members", func(_ int, item *yaml.Node) {
				m := &GroupMember{}
				if d.member(item, "group member", ignoredGroupMember, m, &m.MemberName, &m.Expiration, &m.SystemDisabled) {
					g.GroupMembers = append(g.GroupMembers, m)
				}
			})
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return g
}

func (d *decoder) signedPolicies(n *yaml.Node) *SignedPolicies {
	sp := &SignedPolicies{}
	ok := d.object(n, "policies", sp, ignoredSignedPolicies, func(key string, v *yaml.Node) bool {
		if key != "contents" {
			return false
		}
		sp.Contents = d.domainPolicies(v)
		return true
	})
	if !ok {
		return nil
	}
	return sp
}

func (d *decoder) domainPolicies(n *yaml.Node) *DomainPolicies {
	dp := &DomainPolicies{}
	ok := d.object(n, "policies contents", dp, nil, func(key string, v *yaml.Node) bool {
		switch key {
		case "domain":
			dp.Domain = d.field(dp, "domain", v, "policies domain")
		case "policies":
			d.list(v, "policies", func(_ int, item *yaml.Node) { dp.Policies = appendIf(dp.Policies, d.policy(item, ignoredPolicy)) })
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return dp
}

// policy decodes a ZMS or ZTS policy; ignored lists the fields to drop unread.
func (d *decoder) policy(n *yaml.Node, ignored map[string]bool) *Policy {
	p := &Policy{}
	ok := d.object(n, "policy", p, ignored, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			p.Name = d.field(p, "name", v, "policy name")
		case "modified":
			d.modified(v, "policy", &p.Modified)
		case "assertions":
			d.list(v, "assertions", func(_ int, item *yaml.Node) { p.Assertions = appendIf(p.Assertions, d.assertion(item)) })
		case "version":
			p.Version = d.field(p, "version", v, "policy version")
		case "active":
			d.mark(p, "active", v)
			p.Active = d.boolean(v, "policy active")
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return p
}

func (d *decoder) assertion(n *yaml.Node) *Assertion {
	a := &Assertion{}
	ok := d.object(n, "assertion", a, ignoredAssertion, func(key string, v *yaml.Node) bool {
		switch key {
		case "role":
			a.Role = d.field(a, "role", v, "assertion role")
		case "resource":
			a.Resource = d.field(a, "resource", v, "assertion resource")
		case "action":
			a.Action = d.field(a, "action", v, "assertion action")
		case "effect":
			a.Effect = d.effect(a, v)
		case "id":
			a.ID = d.integer(v, "assertion id", 64)
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return a
}

func (d *decoder) service(n *yaml.Node) *Service {
	s := &Service{}
	ok := d.object(n, "service", s, ignoredService, func(key string, v *yaml.Node) bool {
		switch key {
		case "name":
			s.Name = d.field(s, "name", v, "service name")
		case "modified":
			d.modified(v, "service", &s.Modified)
		case "providerendpoint":
			s.ProviderEndpoint = d.str(v, "service providerEndpoint")
		case "hosts":
			d.list(v, "service hosts", func(_ int, item *yaml.Node) { s.Hosts = append(s.Hosts, d.str(item, "service host")) })
		case "publickeys":
			d.list(v, "service publicKeys", func(_ int, item *yaml.Node) {
				k := &PublicKeyEntry{}
				if d.object(item, "public key", k, nil, func(key string, v *yaml.Node) bool {
					switch key {
					case "key":
						k.Key = d.field(k, "key", v, "public key")
					case "id":
						k.ID = d.field(k, "id", v, "public key id")
					default:
						return false
					}
					return true
				}) {
					s.PublicKeys = append(s.PublicKeys, k)
				}
			})
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	return s
}

// effect decodes an assertion effect: a string (checked by validation), or the enum
// number that zms-cli -o yaml writes for it (1 is ALLOW, 2 is DENY).
func (d *decoder) effect(a *Assertion, v *yaml.Node) Effect {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		return Effect(d.field(a, "effect", v, "assertion effect"))
	}
	d.pos[fieldKey{a, "effect", -1}] = spot{line: v.Line, col: v.Column, bad: true}
	switch v.Value {
	case "1":
		return Allow
	case "2":
		return Deny
	}
	d.problem(v, "assertion effect %s: want ALLOW or DENY (or 1 or 2, as zms-cli -o yaml writes them)", v.Value)
	return ""
}
