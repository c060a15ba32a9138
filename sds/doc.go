// Package sds is the athenz-mesh agent: it keeps workload certificates on the node and
// hands them to Envoy over SDS v3 and to SPIFFE workloads over the Workload API, both on a
// Unix socket whose peers are identified by their kernel credentials.
//
// The package is split along the line go-control-plane draws between protocol and state:
//
//   - Cache (cache.go, cache_watch.go) is the state: per identity the certificate chain,
//     private key and expiry, the trust bundle, role certificates, a monotonic version per
//     entry, and watchers notified without blocking when an entry changes. The identity
//     manager writes to it through SecretSink and, in node mode, learns which identities
//     workloads ask for through DemandSource.
//   - The SDS service (sds*.go) is the xDS protocol: nonces, versions, ACK/NACK, state of
//     the world and delta streams, resource names and what each peer may receive.
//   - The Workload API service (workload.go) serves the same state to go-spiffe clients.
//   - Peer attestation (peer*.go, node.go) turns SO_PEERCRED into a Grant: the identities
//     a connected process is entitled to, in sidecar mode (uid/gid allow-lists) or node
//     mode (pid → cgroup → pod → service account → Athenz identity).
//   - Server (server.go, socket.go) binds the socket and runs the gRPC services.
//   - Manager (identity*.go) is the identity manager: local keys, CSRs in the Athenz
//     conventions, registration with attestation, mTLS refresh with jittered renewal and
//     backoff, role certificates, tokens (TokenFetcher), all through the Issuer
//     interface; Files (files.go) writes the SIA file layout; AgentConfig
//     (agentconfig*.go) is the agent.yaml file.
//
// docs/agent.md is the agent's configuration reference; docs/agent-sds.md describes the
// resource names, validation-context modes, peer authorization modes and socket layout
// for operators.
package sds
