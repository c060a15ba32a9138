// Package authz is the athenz-mesh ext_authz server: Envoy's
// envoy.service.auth.v3.Authorization/Check over gRPC (TCP and a Unix socket), and the same
// decisions over HTTP for Envoy's http_service mode and Istio's envoyExtAuthzHttp provider.
//
// Every request goes through one pipeline (check.go): bypass rules, then who is calling
// (an Authenticator: mTLS identity, access token, role token or role certificate), then
// request mapping (policy.Mapping: domain, action, resource), then an Athenz decision by the
// native evaluator of the active signed bundle, through an LRU decision cache. The answer
// is an allow (with identity headers for the upstream), a deny (403, or 401 when the
// credentials are missing or bad), or "could not decide" (no bundle yet, internal error):
// a distinct status, header, metric label and log result, never confused with a deny.
//
// The bundle comes from a file (watched) or a URL (ETag polling, optional long-poll); it
// is verified, indexed and swapped atomically, and a bad bundle is refused while the last
// good one keeps serving (store.go). The server reports ready only once a bundle is loaded.
//
// Configuration is one YAML file decoded strictly (config.go); docs/authz.md is the user's
// reference.
package authz
