package policy

// Mapping says how an Envoy CheckRequest becomes (principal, domain, action, resource).
// It travels in the bundle so that opa-envoy-plugin and the native authz server map
// requests the same way. The zero Mapping is the default mapping.
type Mapping struct {
	// DefaultDomain is the domain used when neither a rule nor the route's
	// context_extensions name one. Empty: such requests are invalid.
	DefaultDomain string `json:"default_domain,omitempty"`
}
