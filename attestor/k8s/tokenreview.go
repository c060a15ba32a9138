package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// In-cluster locations of the issuer's own credentials, as every pod has them.
const (
	// InClusterTokenFile is the pod's own service-account token.
	InClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	// InClusterCAFile is the CA bundle of the cluster's API server.
	InClusterCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// tokenReviewPath is the TokenReview create endpoint.
const tokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// The TokenReview user extra keys that carry the pod a token is bound to.
const (
	extraPodName      = "authentication.kubernetes.io/pod-name"
	extraPodUID       = "authentication.kubernetes.io/pod-uid"
	extraNodeName     = "authentication.kubernetes.io/node-name"
	extraCredentialID = "authentication.kubernetes.io/credential-id"
)

// maxReviewResponse bounds the TokenReview response read.
const maxReviewResponse = 1 << 20

// reviewer asks the API server whether a token is valid (TokenReview), with a plain HTTP
// client: no client-go, so the issuer links no Kubernetes client machinery.
type reviewer struct {
	url       string
	tokenFile string
	client    *http.Client
	audiences []string
}

// newReviewer resolves the in-cluster defaults of cfg.
func newReviewer(cfg *TokenReviewConfig, audiences []string) (*reviewer, error) {
	server, caFile, tokenFile := cfg.Server, cfg.CAFile, cfg.TokenFile
	if server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("token review: no server configured and KUBERNETES_SERVICE_HOST/PORT are not set (not running in a cluster?)")
		}
		server = "https://" + net.JoinHostPort(host, port)
		if caFile == "" {
			caFile = InClusterCAFile
		}
	}
	if tokenFile == "" {
		tokenFile = InClusterTokenFile
	}
	if !strings.HasPrefix(server, "https://") && !strings.HasPrefix(server, "http://") {
		return nil, fmt.Errorf("token review: server %q must be an http(s) URL", server)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	client, err := newHTTPClient(cfg.HTTPClient, caFile, timeout)
	if err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	return &reviewer{url: strings.TrimSuffix(server, "/") + tokenReviewPath, tokenFile: tokenFile, client: client, audiences: audiences}, nil
}

// review sends the token for review and reads the pod-bound service account it names.
// Every failure to get an answer is ReasonUnavailable: the verifier fails closed.
func (rv *reviewer) review(ctx context.Context, token string) (identity, error) {
	status, err := rv.post(ctx, token)
	if err != nil {
		return identity{}, attestor.Unavailable("the Kubernetes TokenReview API", err)
	}
	if !status.Authenticated {
		var cause error
		if status.Error != "" {
			cause = errors.New(status.Error)
		}
		return identity{}, attestor.Wrap(attestor.ReasonNotAuthenticated, cause, "the Kubernetes API server did not authenticate the token")
	}
	if !intersects(status.Audiences, rv.audiences) {
		return identity{}, attestor.Refusef(attestor.ReasonWrongAudience,
			"the token is not valid for audience %q (the API server reports %q)", rv.audiences, status.Audiences)
	}
	ns, sa, ok := parseUsername(status.User.Username)
	if !ok {
		return identity{}, attestor.Refusef(attestor.ReasonNotAuthenticated, "the token authenticates %.200q, not a service account", status.User.Username)
	}
	id := identity{
		namespace: ns, serviceAccount: sa, serviceAccountUID: status.User.UID,
		podName: extra(status.User, extraPodName), podUID: extra(status.User, extraPodUID),
		nodeName: extra(status.User, extraNodeName), tokenID: strings.TrimPrefix(extra(status.User, extraCredentialID), "JTI="),
	}
	if id.podName == "" || id.podUID == "" {
		return identity{}, attestor.Wrap(attestor.ReasonNotBound, errNotBound, "the token is not bound to a pod (use a projected service-account token)")
	}
	if !isDNSSubdomain(id.podName) || !isUID(id.podUID) || !isUID(id.serviceAccountUID) {
		return identity{}, attestor.Unavailable("the Kubernetes TokenReview API",
			fmt.Errorf("answer with an invalid pod %.100q (uid %.100q) or service account uid %.100q", id.podName, id.podUID, id.serviceAccountUID))
	}
	if len(id.tokenID) > maxUIDLength || !printable(id.tokenID) {
		id.tokenID = ""
	}
	return id, nil
}

// post sends the TokenReview and returns its status.
func (rv *reviewer) post(ctx context.Context, token string) (*authv1.TokenReviewStatus, error) {
	body, err := json.Marshal(&authv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: authv1.SchemeGroupVersion.String(), Kind: "TokenReview"},
		Spec:     authv1.TokenReviewSpec{Token: token, Audiences: rv.audiences},
	})
	if err != nil {
		return nil, err
	}
	bearer, err := readFileLimited(rv.tokenFile, MaxTokenLength)
	if err != nil {
		return nil, fmt.Errorf("the issuer's own service-account token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rv.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(bearer)))
	resp, err := rv.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReviewResponse+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read TokenReview response: %w", err)
	case resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("TokenReview: %s: %.300s", resp.Status, b)
	case len(b) > maxReviewResponse:
		return nil, fmt.Errorf("TokenReview response larger than %d bytes", maxReviewResponse)
	}
	var out authv1.TokenReview
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("TokenReview response: %w", err)
	}
	if out.Kind != "" && out.Kind != "TokenReview" {
		return nil, fmt.Errorf("TokenReview response is a %.50q", out.Kind)
	}
	return &out.Status, nil
}

// extra returns the single value of a user extra key, or "" when there is not exactly one.
func extra(u authv1.UserInfo, key string) string {
	if v := u.Extra[key]; len(v) == 1 {
		return v[0]
	}
	return ""
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
