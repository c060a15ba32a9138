// Package policy is the Athenz domain model and everything that decides with it: loading
// ZMS DomainData files and ZTS signed policy data, validating them, resolving role
// membership (direct, wildcard, group and trust members, with expiry), the native
// evaluator, and the compiler to a signed OPA bundle that real OPA can load.
//
// Lifecycle: Load* reads domains; Compile flattens them into a Compiled snapshot (the
// exact data that goes into the OPA bundle's data.json); NewEvaluator indexes a Compiled
// snapshot for decisions. Everything after NewEvaluator is read-only and safe for
// concurrent use.
package policy

import "github.com/athenz-mesh/athenz-mesh/athenz"

// Effect is an assertion's effect.
type Effect string

// The two assertion effects. An assertion without an effect allows.
const (
	Allow Effect = "ALLOW"
	Deny  Effect = "DENY"
)

// Domain is one Athenz domain in ZMS DomainData form: the structure of the ZMS API and of
// `zms-cli -o json show-domain`. Only the fields that affect decisions are typed here; the
// loader accepts, and drops, the other DomainData fields that ZMS exports.
type Domain struct {
	Name     string           `json:"name"`
	Modified athenz.Timestamp `json:"modified,omitzero"`
	Roles    []*Role          `json:"roles,omitempty"`
	Groups   []*Group         `json:"groups,omitempty"`
	Policies *SignedPolicies  `json:"policies,omitempty"`
	Services []*Service       `json:"services,omitempty"`

	// ServiceCertExpiryMins caps the lifetime of the domain's service certificates, in
	// minutes. 0 means no limit.
	ServiceCertExpiryMins int32 `json:"serviceCertExpiryMins,omitempty"`
	// RoleCertExpiryMins caps the lifetime of role certificates for the domain's roles
	// that set no CertExpiryMins of their own, in minutes. 0 means no limit.
	RoleCertExpiryMins int32 `json:"roleCertExpiryMins,omitempty"`
	// TokenExpiryMins caps the lifetime of access and role tokens for the domain's roles
	// when no granted role sets TokenExpiryMins, in minutes. 0 means no limit.
	TokenExpiryMins int32 `json:"tokenExpiryMins,omitempty"`

	// Source is where the domain was loaded from (a file path), for messages. Not serialised.
	Source string `json:"-"`
	// PolicyOnly is true for a domain loaded from ZTS signed policy data (a .pol file): it
	// has policies but no roles, groups or services, so membership cannot be resolved
	// from it (only token roles apply), and assertion roles are not checked against the
	// domain's roles. Not serialised.
	PolicyOnly bool `json:"-"`
}

// Role is a ZMS role: its full name is "<domain>:role.<name>". A role either has members
// or delegates to another domain through Trust, never both.
type Role struct {
	Name        string           `json:"name"`
	Modified    athenz.Timestamp `json:"modified,omitzero"`
	Members     []string         `json:"members,omitempty"`
	RoleMembers []*RoleMember    `json:"roleMembers,omitempty"`
	Trust       string           `json:"trust,omitempty"`
	// CertExpiryMins caps the lifetime of the role's certificates, in minutes, in place
	// of the domain's RoleCertExpiryMins. 0 means no limit.
	CertExpiryMins int32 `json:"certExpiryMins,omitempty"`
	// TokenExpiryMins caps the lifetime of access and role tokens granting the role, in
	// minutes, in place of the domain's TokenExpiryMins. 0 means no limit.
	TokenExpiryMins int32 `json:"tokenExpiryMins,omitempty"`
}

// RoleMember is one member of a role: a principal ("domain.service", "user.name"), a
// wildcard ("*", "domain.*", "prefix*"), or a group ("domain:group.name").
type RoleMember struct {
	MemberName string `json:"memberName"`
	// Expiration, when set, is the last instant at which the membership counts.
	Expiration *athenz.Timestamp `json:"expiration,omitempty"`
	// SystemDisabled, when non-zero, disables the membership entirely.
	SystemDisabled int32 `json:"systemDisabled,omitempty"`
}

// Group is a ZMS group: its full name is "<domain>:group.<name>". Groups hold principals,
// not wildcards or other groups.
type Group struct {
	Name         string           `json:"name"`
	Modified     athenz.Timestamp `json:"modified,omitzero"`
	GroupMembers []*GroupMember   `json:"groupMembers,omitempty"`
}

// GroupMember is one principal in a group.
type GroupMember struct {
	MemberName     string            `json:"memberName"`
	Expiration     *athenz.Timestamp `json:"expiration,omitempty"`
	SystemDisabled int32             `json:"systemDisabled,omitempty"`
}

// SignedPolicies is the DomainData "policies" member: {"contents": {"domain", "policies"}}.
// The ZMS signature fields are accepted and not checked (ZMS DomainData is trusted input).
type SignedPolicies struct {
	Contents *DomainPolicies `json:"contents"`
}

// DomainPolicies lists a domain's policies, all versions.
type DomainPolicies struct {
	Domain   string    `json:"domain"`
	Policies []*Policy `json:"policies"`
}

// Policy is a ZMS policy: its full name is "<domain>:policy.<name>". With multi-version
// policies only the version whose Active is true (or that has no version) counts.
type Policy struct {
	Name       string           `json:"name"`
	Modified   athenz.Timestamp `json:"modified,omitzero"`
	Assertions []*Assertion     `json:"assertions"`
	Version    string           `json:"version,omitempty"`
	// Active is nil for single-version policies, which are always active.
	Active *bool `json:"active,omitempty"`
}

// Assertion is one rule: members of Role may (ALLOW) or may not (DENY) perform Action on
// Resource. Role is "<domain>:role.<name>" and may contain * and ? globs in the name part;
// Action and Resource ("<domain>:<entity>") may contain * and ? globs and match
// case-insensitively.
type Assertion struct {
	Role     string `json:"role"`
	Resource string `json:"resource"`
	Action   string `json:"action"`
	// Effect is ALLOW when empty.
	Effect Effect `json:"effect,omitempty"`
	ID     int64  `json:"id,omitempty"`
}

// Service is a ZMS service identity with its registered public keys.
type Service struct {
	Name       string            `json:"name"`
	Modified   athenz.Timestamp  `json:"modified,omitzero"`
	PublicKeys []*PublicKeyEntry `json:"publicKeys,omitempty"`
	// ProviderEndpoint is set for services that act as instance providers.
	ProviderEndpoint string   `json:"providerEndpoint,omitempty"`
	Hosts            []string `json:"hosts,omitempty"`
}

// PublicKeyEntry is a registered public key: Key is the ybase64 encoding of the PEM text.
type PublicKeyEntry struct {
	Key string `json:"key"`
	ID  string `json:"id"`
}
