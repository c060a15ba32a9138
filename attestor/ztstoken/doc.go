// Package ztstoken is the attestor for ZTS instance register tokens: the JWS the issuer
// hands out at GET /zts/v1/instance/{provider}/{domain}/{service}/{instanceId}/token to a
// caller allowed to update the service, and takes back once as the attestationData of
// POST /zts/v1/instance (zts-svccert -use-instance-register-token). Mint makes a token
// (the issuer calls it), Verifier checks one, Collector is the agent's side.
//
// The format is Athenz's (athenz-compat.md section 1.2): header typ JWT and kid; claims
// jti, sub = <domain>.<service>, iat, iss = aud = sys.auth.zts, provider, domain, service,
// instance_id and client_id; no exp. A token is good for 30 minutes after iat, once, for
// exactly the provider, service and instance it names. See README.md.
package ztstoken
