// Package attestor is the contract between the issuer and the ways a workload can prove
// who it is. One interface, many methods of proof: each sub-package verifies one kind of
// evidence and returns what that evidence proves, and the issuer enforces it.
//
//	ztstoken   ZTS instance register tokens (a JWS the issuer minted, single use)
//	ntoken     Athenz service n-tokens signed with the service's registered key
//	jointoken  one-time join tokens created by an operator
//	k8s        Kubernetes projected service-account tokens (offline JWKS or TokenReview)
//
// An attestor never signs a certificate and never authorizes anything. Verify reads the
// attestation data of a Request, checks it, and returns a Result: the domain, service and
// instance id the evidence proves, whether certificates issued on it may be refreshed,
// optional caps (validity, DNS names) and audit attributes. The issuer then checks the CSR
// against that Result (CN, every SAN, the instance id), checks that the provider may
// launch the service (the domain's policy), and only then signs. Anything the Result does
// not state, the evidence did not prove.
//
// Refusals are *Error values with a fixed Reason, so the issuer can log them, count them
// and answer 403 {"code":403,"message":...} without parsing text; ReasonUnavailable marks a
// failure of a dependency (store, API server), which the issuer reports as a server error
// while still refusing: every verifier fails closed.
//
// Each sub-package also has a Collector, the agent's half: it produces the attestation
// data for the agent's register call (reads a token file, signs an n-token). Collectors
// of single-use evidence implement OneTime, so the agent can tell them when the issuer has
// consumed it.
//
// This package and its sub-packages import only the athenz package, the standard library
// and k8s.io/api (for the TokenReview wire types). They declare the small interfaces they
// consume (OnceStore, ServiceKeys, Burner); the issuer implements them. Nothing here keeps
// global state; every Verifier and Collector is safe for concurrent use.
package attestor
