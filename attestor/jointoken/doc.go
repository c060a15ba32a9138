// Package jointoken is the attestor for one-time join tokens: random secrets an operator
// creates for one service (athenz-mesh issuer join-token create --domain D --service S
// --ttl 1h) and hands to a workload out of band, for bootstrapping where no platform
// evidence exists (bare metal, a developer's laptop).
//
// A token is "amjt1." followed by 32 random bytes in unpadded base64url. The issuer
// stores only its SHA-256 and burns it on first use; whoever presents it first gets one
// certificate for the service it was created for. See README.md.
package jointoken
