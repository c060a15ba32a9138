// Package issuer is the athenz-mesh certificate authority and token service: an HTTPS
// server that speaks the Athenz ZTS REST API under /zts/v1, so that Athenz's own tools
// (zts-svccert, zts-rolecert, zts-accesstoken, zpe-updater, SIA) and the ZTS Go client
// work against it unchanged.
//
// It wires together the pieces other packages provide: the CA (issuer/ca) signs what the
// CSR checks allow, the store (issuer/store) records every certificate and every use of a
// single-use credential, the attestors (attestor/...) prove who a registering workload is,
// and the domain data (policy) says who may launch which service, who holds which role and
// which public keys a service registered. The issuer adds the HTTP surface, launch
// authorization, token minting (access tokens, role tokens, register tokens), signed
// policy data, JWKS and the OPA bundle.
//
// Every route lives in its own file (route_*.go). Each handler authenticates the caller
// as its route requires, decodes a size-limited body, checks every name, and either
// issues and records, or refuses with an Athenz error body {"code","message"} and writes
// nothing. Every issuance and every refusal is one audit log line and one metric.
//
// With istio.listen set it also serves Istio's CA API (istioca*.go):
// istio.v1.auth.IstioCertificateService/CreateCertificate over gRPC with TLS, authenticated
// by the pod's service-account token (the Kubernetes attestor's verification) and
// ClusterID, issuing Istio SPIFFE IDs with the mapped Athenz principal as CN
// (docs/issuer-istio.md).
//
// Wire facts (paths, status codes, JSON names, timestamps, token formats) follow
// athenz-compat.md beside the design notes; docs/issuer.md is the user's reference.
package issuer
