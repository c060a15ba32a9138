package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// serviceAccountPrefix starts the subject (and the TokenReview user name) of every
// service-account token: system:serviceaccount:<namespace>:<name>.
const serviceAccountPrefix = "system:serviceaccount:"

// maxUIDLength bounds the object UIDs read from tokens (Kubernetes writes 36-byte UUIDs).
const maxUIDLength = 128

// errNotBound marks a token that is genuine but not bound to a pod: a legacy secret-based
// token, or one requested for a service account alone.
var errNotBound = errors.New("not a pod-bound projected service-account token")

// identity is what a token proves, however it was verified.
type identity struct {
	namespace         string
	serviceAccount    string
	serviceAccountUID string
	podName           string
	podUID            string
	nodeName          string // optional
	tokenID           string // optional
}

// objectRef is a {"name","uid"} member of the kubernetes.io claim.
type objectRef struct {
	name, uid string
}

// claims are the claims of a projected service-account token, as Verify reads them.
type claims struct {
	issuer    string
	subject   string
	audience  []string
	expiry    int64
	notBefore int64
	issuedAt  int64
	id        string
	identity  identity
}

// parseClaims reads a token payload by exact member names. exp, iat, iss, sub, aud and
// the kubernetes.io claim with namespace, serviceaccount{name,uid} and pod{name,uid} are
// required; the subject must repeat the namespace and service account. A token without a
// kubernetes.io claim or a pod fails with an error wrapping errNotBound.
func parseClaims(payload []byte) (*claims, error) {
	members, err := athenz.DecodeJSONObject(payload)
	if err != nil {
		return nil, err
	}
	c := new(claims)
	// Legacy secret-based tokens carry "kubernetes.io/serviceaccount/..." claims instead
	// (and no exp); say so rather than complain about the first missing claim.
	raw, ok := members["kubernetes.io"]
	if !ok {
		return nil, fmt.Errorf("%w: no kubernetes.io claim", errNotBound)
	}
	if err := c.readKubernetes(raw); err != nil {
		return nil, err
	}
	if err := athenz.DecodeJSONMembers(members, map[string]any{
		"iss": &c.issuer, "sub": &c.subject, "exp": &c.expiry, "nbf": &c.notBefore, "iat": &c.issuedAt, "jti": &c.id,
	}); err != nil {
		return nil, err
	}
	if c.audience, err = audience(members["aud"]); err != nil {
		return nil, err
	}
	switch {
	case c.issuer == "" || c.subject == "":
		return nil, errors.New("iss and sub are required")
	case c.expiry <= 0 || c.issuedAt <= 0 || c.notBefore < 0:
		return nil, errors.New("exp and iat are required positive unix times")
	case c.expiry <= c.issuedAt:
		return nil, errors.New("exp is not after iat")
	case len(c.id) > maxUIDLength || !printable(c.id):
		return nil, errors.New("jti is not a short printable string")
	}
	if c.subject != serviceAccountPrefix+c.identity.namespace+":"+c.identity.serviceAccount {
		return nil, fmt.Errorf("sub %.200q does not name service account %s/%s", c.subject, c.identity.namespace, c.identity.serviceAccount)
	}
	c.identity.tokenID = c.id
	return c, nil
}

// audience reads "aud" as JWT allows it: one string or an array of strings.
func audience(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("aud is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil && one != "" {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, errors.New("aud must be a string or a non-empty array of strings")
	}
	return many, nil
}

// readKubernetes reads the kubernetes.io claim.
func (c *claims) readKubernetes(raw json.RawMessage) error {
	k, err := athenz.DecodeJSONObject(raw)
	if err != nil {
		return fmt.Errorf("kubernetes.io: %v", err)
	}
	id := &c.identity
	if err := athenz.DecodeJSONMembers(k, map[string]any{"namespace": &id.namespace}); err != nil {
		return fmt.Errorf("kubernetes.io: %v", err)
	}
	if !isDNSLabel(id.namespace) {
		return fmt.Errorf("kubernetes.io: namespace %.100q is not a namespace name", id.namespace)
	}
	sa, err := ref(k, "serviceaccount", true)
	if err != nil {
		return err
	}
	id.serviceAccount, id.serviceAccountUID = sa.name, sa.uid
	pod, err := ref(k, "pod", false)
	if err != nil {
		return err
	}
	if pod == nil {
		return fmt.Errorf("%w: no kubernetes.io pod claim", errNotBound)
	}
	id.podName, id.podUID = pod.name, pod.uid
	node, err := ref(k, "node", false)
	if err != nil {
		return err
	}
	if node != nil {
		id.nodeName = node.name
	}
	return nil
}

// ref reads a {"name","uid"} member of the kubernetes.io claim; both fields are
// required when the member is present.
func ref(k map[string]json.RawMessage, name string, required bool) (*objectRef, error) {
	raw, ok := k[name]
	if !ok || string(raw) == "null" {
		if required {
			return nil, fmt.Errorf("kubernetes.io: no %s", name)
		}
		return nil, nil
	}
	m, err := athenz.DecodeJSONObject(raw)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.io %s: %v", name, err)
	}
	var r objectRef
	if err := athenz.DecodeJSONMembers(m, map[string]any{"name": &r.name, "uid": &r.uid}); err != nil {
		return nil, fmt.Errorf("kubernetes.io %s: %v", name, err)
	}
	if !isDNSSubdomain(r.name) || !isUID(r.uid) {
		return nil, fmt.Errorf("kubernetes.io %s: name and uid must be a Kubernetes name and a UID", name)
	}
	return &r, nil
}

// isUID reports whether s can be a Kubernetes UID: 1 to 128 characters of [A-Za-z0-9-],
// which also makes it a valid Athenz instance id.
func isUID(s string) bool {
	if s == "" || len(s) > maxUIDLength {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] < ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// parseUsername reads "system:serviceaccount:<namespace>:<name>", the TokenReview user
// name of a service account.
func parseUsername(u string) (namespace, serviceAccount string, ok bool) {
	rest, ok := strings.CutPrefix(u, serviceAccountPrefix)
	if !ok {
		return "", "", false
	}
	namespace, serviceAccount, ok = strings.Cut(rest, ":")
	if !ok || !isDNSLabel(namespace) || !isDNSSubdomain(serviceAccount) {
		return "", "", false
	}
	return namespace, serviceAccount, true
}
