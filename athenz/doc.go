// Package athenz is the Athenz wire vocabulary shared by every other package: name
// validation and splitting (domains, services, roles, groups, policies, resources,
// members), RDL timestamps, the ybase64 encoding, SHA-256 signatures in the ybase64 form
// used by n-tokens, role tokens and signed policy data, public and private key parsing, the
// ZTS signed policy data documents together with the canonical JSON their signatures
// cover, and the one compact JWS implementation of the module (ParseJWS, SignJWS,
// DecodeJSONObject), which access tokens, the attestors' tokens and OPA bundle signatures
// share.
//
// Everything here follows Athenz v1.12.13 byte for byte where bytes are signed or compared
// (see athenz-compat.md beside the design notes), and is stricter than Athenz only where
// Athenz's own behaviour is accidental (for example the Go RDL validator's unanchored
// alternations). Beyond the standard library it uses only go-spiffe (SPIFFE ID syntax), holds no global mutable
// state, and every function is safe for concurrent use.
package athenz
