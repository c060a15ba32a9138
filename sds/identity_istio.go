package sds

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// DefaultIstioAudience is the token audience Istio's CA API expects (istio-agent's, and
// the issuer's istio.audiences default).
const DefaultIstioAudience = "istio-ca"

// DefaultIstioTrustDomain is Istio's default trust domain (mesh config trustDomain).
const DefaultIstioTrustDomain = "cluster.local"

// DefaultIstioKubeletTokenPath is where the kubelet keeps the token Istio's sidecar
// injection projects into every injected pod (volume "istio-token", path "istio-token",
// audience istio-ca), seen from a DaemonSet that mounts the host's /var/lib/kubelet/pods
// at the same path.
const DefaultIstioKubeletTokenPath = "/var/lib/kubelet/pods/" + PodUIDPlaceholder + "/volumes/kubernetes.io~projected/istio-token/istio-token"

// IstioCA is what the identity manager needs from the issuer's Istio CA API
// (istio.v1.auth.IstioCertificateService/CreateCertificate) in node mode with Istio
// identities. cmd/athenz-mesh implements it over gRPC; the implementation owns the
// address, the TLS trust and the ClusterID it sends. Errors the issuer answered with a
// refusal should implement IssuerStatusError. Safe for concurrent use.
type IstioCA interface {
	// CreateCertificate sends a CSR authenticated by a pod's service-account token and
	// returns the certificate chain as the API does: PEM certificates, leaf first, root
	// last.
	CreateCertificate(ctx context.Context, req *IstioCertRequest) ([][]byte, error)
}

// IstioCertRequest is one CreateCertificate call.
type IstioCertRequest struct {
	// CSR is the PEM certificate request.
	CSR []byte
	// Token is the pod's projected service-account token, sent as the bearer credential.
	// Secret.
	Token string
	// Validity is the lifetime asked for; zero lets the issuer choose.
	Validity time.Duration
}

// NodeIstio makes node mode obtain each pod's certificate from the issuer's Istio CA
// API instead of registering through the ZTS API: the certificate carries Istio's
// identity spiffe://<TrustDomain>/ns/<namespace>/sa/<service account> (taken from the
// pod's token) as its only SAN, and the issuer puts the Athenz principal in the CN.
// There is no refresh in that API: every renewal is a new CreateCertificate with a
// fresh token. Role certificates and tokens cannot be had on this path (the issuer's
// ZTS API does not accept these certificates for them).
type NodeIstio struct {
	// CA is the issuer's Istio CA API. Required.
	CA IstioCA
	// TrustDomain is the mesh's trust domain; it must be the issuer's
	// istio.trust_domain. Empty: DefaultIstioTrustDomain.
	TrustDomain string
	// Audience is the audience the pods' tokens must carry (one of the issuer's
	// istio.audiences); a token without it is not sent. Empty: DefaultIstioAudience.
	Audience string
}

func (n *NodeIstio) trustDomain() string { return cmpOr(n.TrustDomain, DefaultIstioTrustDomain) }
func (n *NodeIstio) audience() string    { return cmpOr(n.Audience, DefaultIstioAudience) }

// IstioSpiffeID returns Istio's identity of a service account.
func IstioSpiffeID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// obtainIstio gets a certificate from the Istio CA API with a fresh token of a pod of the
// identity and a new key.
func (m *Manager) obtainIstio(ctx context.Context, st *identityState) error {
	spec, ic := &st.spec, st.spec.istio
	key, err := newKey(spec.KeyType)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	token, err := spec.Collector.Collect(tctx, attestor.Target{Provider: spec.Provider, Domain: spec.Domain, Service: spec.Service})
	if err != nil {
		return fmt.Errorf("istio certificate %s: %w", st.name, err)
	}
	claims, err := k8sTokenClaims(token)
	if err == nil && claims.serviceAccount == "" {
		err = errors.New("kubernetes token: no kubernetes.io service account name")
	}
	if err != nil {
		return fmt.Errorf("istio certificate %s: %w", st.name, err)
	}
	if !slices.Contains(claims.audiences, ic.audience()) {
		return fmt.Errorf("istio certificate %s: the token of pod %s has audiences %q, not %q: project the token with the audience the issuer's istio.audiences accept (node.istio_ca.audience)",
			st.name, claims.podUID, claims.audiences, ic.audience())
	}
	// The token is the kubelet's file of a pod recorded for the identity; its claims must
	// be that pod's, or the certificate would name a service account the pods served do
	// not run as.
	if b, ok := m.node.serviceAccountOf(strings.ToLower(claims.podUID)); !ok || b != (istioBinding{claims.namespace, claims.serviceAccount}) {
		return fmt.Errorf("istio certificate %s: the token read is for pod %s, service account %s/%s, which is not a pod of this identity on this node",
			st.name, claims.podUID, claims.namespace, claims.serviceAccount)
	}
	spiffeID := IstioSpiffeID(ic.trustDomain(), claims.namespace, claims.serviceAccount)
	csr, err := istioCSR(key, spiffeID)
	if err != nil {
		return err
	}
	pems, err := ic.CA.CreateCertificate(tctx, &IstioCertRequest{CSR: csr, Token: token, Validity: spec.Validity})
	m.metrics.count("istio_create_certificate", err)
	if err != nil {
		return fmt.Errorf("istio certificate %s (%s): %w", st.name, spiffeID, err)
	}
	chain, root, err := istioChain(pems, key, spiffeID)
	if err != nil {
		return fmt.Errorf("istio certificate %s: %w", st.name, err)
	}
	if p := certPrincipal(chain[0]); p != "" && p != st.name {
		return fmt.Errorf("istio certificate %s: the issuer named %s %s: node.mapping and the issuer's istio.mapping disagree", st.name, spiffeID, p)
	}
	ic2 := &issuedCred{cred: &Credential{Chain: chain, Key: key}, instanceID: claims.podUID, namespace: claims.namespace, intermediates: chain[1:]}
	// The identity may have passed to another service account while the certificate was
	// being issued (its pods left and another's arrived): then it must not be served.
	return m.node.whileBound(st.name, istioBinding{claims.namespace, claims.serviceAccount}, func() error {
		return m.commit(st, ic2, []*x509.Certificate{root}, "istio")
	})
}

// istioCSR builds the request Istio's CA API accepts: no subject (the issuer sets the
// CN) and exactly one SAN, the SPIFFE ID.
func istioCSR(key crypto.Signer, spiffeID string) ([]byte, error) {
	uris, err := parseURIs(spiffeID)
	if err != nil {
		return nil, err
	}
	return signCSR(&x509.CertificateRequest{Subject: pkix.Name{}, URIs: uris}, key)
}

// istioChain reads a CreateCertificate answer as istio-agent does: the last certificate
// is the root that signed it (it is added to the trust bundle, not served in the chain),
// the others the chain served, leaf first. The leaf must be for key and carry exactly
// spiffeID.
func istioChain(pems [][]byte, key crypto.Signer, spiffeID string) (chain []*x509.Certificate, root *x509.Certificate, err error) {
	if len(pems) < 2 {
		return nil, nil, fmt.Errorf("the Istio CA answered %d certificates; want the leaf first and the root last", len(pems))
	}
	var all []*x509.Certificate
	for i, p := range pems {
		certs, err := parseCertsPEM(p)
		if err != nil || len(certs) == 0 {
			return nil, nil, fmt.Errorf("the Istio CA's certificate %d is not PEM: %v", i, err)
		}
		all = append(all, certs...)
	}
	chain, root = all[:len(all)-1], all[len(all)-1]
	leaf := chain[0]
	switch {
	case !keyMatches(leaf, key):
		return nil, nil, errors.New("the issued certificate is not for the key sent")
	case len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID:
		return nil, nil, fmt.Errorf("the issued certificate carries URIs %v, want only %s", leaf.URIs, spiffeID)
	}
	return chain, root, nil
}

// istioBinding is the service account of a pod, as node mode with Istio records it.
type istioBinding struct{ namespace, serviceAccount string }

// bindIstio records p's service account, or refuses p when another pod of the identity
// that still exists on this node has another service account: the identity's
// certificate carries one service account's SPIFFE ID, which must not be handed to a
// pod of another. Pods whose token file is gone are forgotten. When the identity thereby
// passes to another service account, its certificate is withdrawn (n.rebound) before p
// can be granted it. n.mu held.
func (n *NodeIdentities) bindIstio(p Pod, identity string) error {
	want := istioBinding{p.Namespace, p.ServiceAccount}
	if n.podSA == nil {
		n.podSA = make(map[string]istioBinding)
	}
	var err error
	n.pods[identity] = slices.DeleteFunc(n.pods[identity], func(uid string) bool {
		b := n.podSA[uid]
		if uid == p.UID || b == want || err != nil {
			return false
		}
		if _, serr := os.Stat(n.tokenPath(uid)); serr != nil {
			delete(n.podSA, uid)
			return true
		}
		err = fmt.Errorf("maps to %s, which this node already serves to service account %s/%s (pod %s); in Istio mode an Athenz service is served for one service account at a time on a node (its certificate carries the service account's SPIFFE ID)",
			identity, b.namespace, b.serviceAccount, uid)
		return false
	})
	if err != nil {
		return err
	}
	n.podSA[p.UID] = want
	if n.bound == nil {
		n.bound = make(map[string]istioBinding)
	}
	prev, had := n.bound[identity]
	n.bound[identity] = want
	if had && prev != want && n.rebound != nil {
		n.rebound(identity)
	}
	return nil
}

// errRebound is the failure of an Istio issuance that finished after its identity
// passed to another service account.
var errRebound = errors.New("the identity passed to another service account while its certificate was issued; issuing again")

// whileBound runs fn, which serves a certificate of identity for b, only while identity
// is bound to b, and holds n.mu meanwhile so that Record cannot pass the identity to
// another service account (and grant it to a pod of that one) before fn has returned.
// fn must not call back into n.
func (n *NodeIdentities) whileBound(identity string, b istioBinding, fn func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cur, ok := n.bound[identity]; !ok || cur != b {
		return fmt.Errorf("istio certificate %s for %s/%s: %w", identity, b.namespace, b.serviceAccount, errRebound)
	}
	return fn()
}

// rebindNode withdraws a node identity that passed to another service account (Istio):
// its certificate names the previous one. The identity is issued again at once for the
// new one; until then its peers wait, as for a first issuance. Called by Record with
// m.node.mu held: lock order node, manager, identity, sink.
func (m *Manager) rebindNode(identity string) {
	if st := m.state(identity); st != nil {
		st.mu.Lock()
		st.cur = nil
		st.sched = schedule{}
		for _, r := range st.roles {
			r.cur, r.keyOf = nil, nil
		}
		st.mu.Unlock()
		st.poke()
	}
	m.sink.RemoveIdentity(identity)
	m.log.Warn("node identity passed to another service account; its certificate is withdrawn and issued again", "identity", identity)
}

// serviceAccountOf returns the service account recorded for a pod in Istio mode.
func (n *NodeIdentities) serviceAccountOf(uid string) (istioBinding, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, ok := n.podSA[uid]
	return b, ok
}
