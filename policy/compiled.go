package policy

// Compiled is the flattened, indexed form of a set of domains: membership is resolved
// (groups and trust delegation folded into each role's members, disabled members dropped,
// expiry kept), names are lower-cased, and assertions are indexed by action and resource.
//
// It is exactly the document stored under data.athenz in the OPA bundle's data.json, so the
// Rego policy and the native Evaluator decide from the same data. Everything a decision
// needs is a map lookup away; nothing is a flat list that must be scanned, except the
// (usually few) glob entries.
type Compiled struct {
	// Revision identifies the snapshot: a hash of its contents, stable across compiles of
	// the same input.
	Revision string `json:"revision"`
	// Domains maps a lower-case domain name to its compiled form.
	Domains map[string]*CompiledDomain `json:"domains"`
	// Mapping says how an Envoy request becomes (domain, action, resource). Nil means the
	// default mapping (see Mapping).
	Mapping *Mapping `json:"mapping,omitempty"`
}

// CompiledDomain is one domain's decision data.
type CompiledDomain struct {
	// Roles lists the short names of every role in the domain, sorted.
	Roles []string `json:"roles"`
	// Members maps a principal to the short names of the roles it is a direct member of
	// (through a role member, a group, or trust delegation), each with the last instant the
	// membership counts as Unix nanoseconds, 0 meaning it never expires. When a principal
	// reaches a role along several paths, the latest expiry wins (0 beats everything).
	Members map[string]map[string]int64 `json:"members"`
	// Prefixes are wildcard members: any principal that starts with Prefix is a member of
	// Role until Expires (0: never). "*" compiles to the empty prefix, "sports.*" and
	// "sports.api*" to "sports." and "sports.api". Sorted by role, then prefix.
	Prefixes []PrefixMember `json:"prefixes,omitempty"`
	// Actions maps a lower-case action without globs to the assertions with that action.
	Actions map[string]*ActionIndex `json:"actions,omitempty"`
	// GlobActions are the assertions whose action contains * or ?, sorted by ID.
	GlobActions []*CompiledAssertion `json:"glob_actions,omitempty"`

	// encoded caches the JSON encoding made by Compile, which hashes it for the revision,
	// so that writing the bundle does not encode a large domain a second time. A
	// CompiledDomain is immutable once compiled, so the cache cannot go stale.
	encoded []byte
}

// PrefixMember is a wildcard role member.
type PrefixMember struct {
	Prefix  string `json:"prefix"`
	Role    string `json:"role"`
	Expires int64  `json:"expires"`
}

// ActionIndex holds the assertions for one literal action.
type ActionIndex struct {
	// Exact maps a lower-case resource without globs to its assertions, sorted by ID.
	Exact map[string][]*CompiledAssertion `json:"exact,omitempty"`
	// Globs are the assertions whose resource contains * or ?, sorted by ID.
	Globs []*CompiledAssertion `json:"globs,omitempty"`
}

// CompiledAssertion is one active assertion, lower-cased, with anchored regular
// expressions for its glob parts (for Rego; the native evaluator uses its own matcher,
// which a test holds equal to the expression).
type CompiledAssertion struct {
	// ID is the assertion's position in the domain (policies sorted by name, assertions in
	// file order), unique within the domain. When several assertions decide a request, the
	// lowest ID is the one reported, so every evaluator explains the same way.
	ID int `json:"id"`
	// Policy is the short policy name.
	Policy string `json:"policy"`
	// Role is the short role name, possibly with globs.
	Role     string `json:"role"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Effect   Effect `json:"effect"`
	// RoleRe, ActionRe and ResourceRe are set only when the field has a glob: the anchored
	// regular expression (RE2 syntax) equivalent to it.
	RoleRe     string `json:"role_re,omitempty"`
	ActionRe   string `json:"action_re,omitempty"`
	ResourceRe string `json:"resource_re,omitempty"`
}
