package k8s

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Limits and defaults.
const (
	// MaxTokenLength is the longest token, in bytes, that Verify reads (and the longest
	// token file the collector reads); real ones are about 1 KiB.
	MaxTokenLength = 16 << 10
	// DefaultSkew is the clock skew allowed on exp, nbf and iat.
	DefaultSkew = 60 * time.Second
	// DefaultMinRefreshInterval is the least time between two JWKS fetches.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultKeysMaxAge is how long fetched keys are used before they are fetched again.
	DefaultKeysMaxAge = time.Hour
	// DefaultTimeout bounds each request to the API server or JWKS endpoint.
	DefaultTimeout = 10 * time.Second
)

// algorithms are the signature algorithms Kubernetes signs service-account tokens with.
var algorithms = []string{"RS256", "ES256"}

// InstanceIDSource says which pod attribute becomes the instance id.
type InstanceIDSource string

// The InstanceIDSource choices.
const (
	// InstanceIDPodUID takes the pod's UID (the default): unique across the cluster's
	// lifetime, so each pod is its own instance and a recreated pod is a new one.
	InstanceIDPodUID InstanceIDSource = "pod-uid"
	// InstanceIDPodName takes the pod's name: unique within its namespace at any one
	// time only. A StatefulSet pod keeps its instance id across restarts; two namespaces
	// mapped to one service can collide, so use it only where that cannot happen.
	InstanceIDPodName InstanceIDSource = "pod-name"
)

// Config configures a Verifier: exactly one of Offline and TokenReview, plus the
// audiences and the mapping. Every other zero value means the documented default.
type Config struct {
	// Audiences are the accepted token audiences, e.g. ["athenz-mesh"] for the agent's
	// projected token or ["istio-ca"] for istio-agent's. A token must name at least one.
	// Required: a token meant for the API server must never attest anything here.
	Audiences []string
	// Mapping maps namespace and service account to the Athenz service. It is
	// validated by NewVerifier; an empty mapping maps nothing.
	Mapping Mapping
	// InstanceID chooses the instance id. Zero: InstanceIDPodUID.
	InstanceID InstanceIDSource
	// Skew is the clock skew allowed on exp, nbf and iat in offline mode. Zero:
	// DefaultSkew (60 s); negative: none.
	Skew time.Duration
	// MaxValidity is Result.MaxValidity. Zero: no cap from this attestor.
	MaxValidity time.Duration
	// Offline verifies tokens locally against the cluster's published signing keys.
	Offline *OfflineConfig
	// TokenReview asks the API server about each token.
	TokenReview *TokenReviewConfig
}

// OfflineConfig verifies tokens against the cluster's signing keys. Fast (no API call per
// token) but blind to revocation: a token stays valid until it expires even when its pod
// is deleted, which the API server would notice. Keep token lifetimes short, or use
// TokenReview.
type OfflineConfig struct {
	// Issuer is the cluster's service-account issuer (kube-apiserver
	// --service-account-issuer), e.g. "https://kubernetes.default.svc.cluster.local" or
	// an EKS OIDC URL; tokens must carry exactly this iss. Required.
	Issuer string
	// File is a JWKS file (kubectl get --raw /openid/v1/jwks > jwks.json), read at
	// first use and again on refresh.
	File string
	// URL is the JWKS URL (e.g. https://kubernetes.default.svc/openid/v1/jwks).
	// File and URL both empty: OIDC discovery at Issuer/.well-known/openid-configuration,
	// whose jwks_uri is then fetched.
	URL string
	// BearerTokenFile, when set, is sent as a bearer token with URL and discovery
	// requests (the API server serves its JWKS to service accounts; InClusterTokenFile is
	// the usual value).
	BearerTokenFile string
	// CAFile is a PEM bundle trusted for URL and discovery (InClusterCAFile in-cluster).
	// Empty: the system roots.
	CAFile string
	// HTTPClient, when set, is used instead of one built from CAFile (tests).
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two fetches of the keys; an unknown
	// key id within it is refused without a fetch. Zero: DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// MaxAge is how long fetched keys are trusted before the next use fetches them again
	// (on failure the old keys keep serving). Zero: DefaultKeysMaxAge.
	MaxAge time.Duration
	// Timeout bounds each fetch. Zero: DefaultTimeout.
	Timeout time.Duration
}

// TokenReviewConfig asks the API server (POST authentication.k8s.io/v1 TokenReview) about
// each token, with the audiences of Config. The issuer's service account needs RBAC
// "create" on tokenreviews (the system:auth-delegator ClusterRole). The API server checks
// that the pod the token is bound to still exists, so a deleted pod's token stops working
// at once.
type TokenReviewConfig struct {
	// Server is the API server URL. Empty: in-cluster,
	// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
	Server string
	// CAFile is the PEM bundle trusted for Server. Empty: InClusterCAFile when Server is
	// empty, the system roots otherwise.
	CAFile string
	// TokenFile is the issuer's own service-account token, read for every request (the
	// kubelet rotates it). Empty: InClusterTokenFile.
	TokenFile string
	// HTTPClient, when set, is used instead of one built from CAFile (tests).
	HTTPClient *http.Client
	// Timeout bounds each review. Zero: DefaultTimeout.
	Timeout time.Duration
}

// Verifier verifies Kubernetes projected service-account tokens. It is safe for
// concurrent use.
type Verifier struct {
	cfg     Config
	keys    *keyCache // offline mode
	issuer  string
	review  *reviewer // TokenReview mode
	mapping Mapping
}

// NewVerifier checks cfg and returns a Verifier. Nothing is fetched yet: offline keys are
// loaded at first use.
func NewVerifier(cfg Config) (*Verifier, error) {
	var errs []error
	if (cfg.Offline == nil) == (cfg.TokenReview == nil) {
		errs = append(errs, errors.New("configure exactly one of offline verification and token review"))
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, errors.New("at least one audience is required (e.g. \"athenz-mesh\")"))
	}
	for _, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, errors.New("empty audience"))
		}
	}
	switch cfg.InstanceID {
	case "":
		cfg.InstanceID = InstanceIDPodUID
	case InstanceIDPodUID, InstanceIDPodName:
	default:
		errs = append(errs, fmt.Errorf("instance id %q: want %q or %q", cfg.InstanceID, InstanceIDPodUID, InstanceIDPodName))
	}
	if cfg.MaxValidity < 0 {
		errs = append(errs, errors.New("max validity must not be negative"))
	}
	if err := cfg.Mapping.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case cfg.Skew == 0:
		cfg.Skew = DefaultSkew
	case cfg.Skew < 0:
		cfg.Skew = 0
	}
	v := &Verifier{cfg: cfg, mapping: cfg.Mapping}
	if cfg.Offline != nil {
		if err := v.setupOffline(cfg.Offline); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.TokenReview != nil && len(errs) == 0 {
		rv, err := newReviewer(cfg.TokenReview, cfg.Audiences)
		if err != nil {
			errs = append(errs, err)
		}
		v.review = rv
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubernetes verifier: %w", err)
	}
	return v, nil
}

func (v *Verifier) setupOffline(o *OfflineConfig) error {
	if u, err := url.Parse(o.Issuer); o.Issuer == "" || err != nil || u.Host == "" {
		return fmt.Errorf("offline: issuer %q must be the cluster's service-account issuer URL", o.Issuer)
	}
	if o.File != "" && o.URL != "" {
		return errors.New("offline: set at most one of the JWKS file and URL")
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	client, err := newHTTPClient(o.HTTPClient, o.CAFile, timeout)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	f := &fetcher{issuer: o.Issuer, file: o.File, url: o.URL, tokenFile: o.BearerTokenFile, client: client}
	v.issuer = o.Issuer
	v.keys = &keyCache{fetch: f.fetch, minInterval: o.MinRefreshInterval, maxAge: o.MaxAge, timeout: timeout}
	if v.keys.minInterval <= 0 {
		v.keys.minInterval = DefaultMinRefreshInterval
	}
	if v.keys.maxAge <= 0 {
		v.keys.maxAge = DefaultKeysMaxAge
	}
	return nil
}

// Recognizes reports whether data has the shape of a compact JWS.
func (v *Verifier) Recognizes(data string) bool { return looksLikeJWS(data) }

func looksLikeJWS(s string) bool {
	return len(s) <= MaxTokenLength && strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Verify checks a projected service-account token, offline or by TokenReview, maps its
// namespace and service account to the Athenz service, and binds the request to it: the
// request's domain and service (when named), instance id (when named) and namespace
// (when named) must be the token's. The Result names the pod (its UID or name) as the
// instance, the namespace as Result.Namespace, and is refreshable. No DNS name is
// proven: a service-account token says nothing about the pod's address.
func (v *Verifier) Verify(ctx context.Context, r *attestor.Request) (*attestor.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, attestor.Unavailable("Kubernetes token verification", err)
	}
	token := r.AttestationData
	if !looksLikeJWS(token) {
		return nil, attestor.Refusef(attestor.ReasonMalformed, "attestation data is not a service-account token (a JWS of at most %d bytes)", MaxTokenLength)
	}
	var (
		id  identity
		err error
	)
	if v.keys != nil {
		id, err = v.verifyOffline(ctx, token, r.Time())
	} else {
		id, err = v.review.review(ctx, token)
	}
	if err != nil {
		return nil, err
	}
	return v.result(id, r)
}

// verifyOffline checks the signature and claims of a token.
func (v *Verifier) verifyOffline(ctx context.Context, token string, now time.Time) (identity, error) {
	tok, err := athenz.ParseJWS(token, MaxTokenLength, algorithms...)
	switch {
	case errors.Is(err, athenz.ErrUnsupportedAlgorithm):
		return identity{}, attestor.Wrap(attestor.ReasonUnsupportedAlgorithm, err, "token algorithm not allowed (RS256 and ES256 are)")
	case err != nil:
		return identity{}, attestor.Wrap(attestor.ReasonMalformed, err, "token is not a readable JWS")
	case tok.Header.Kid == "":
		return identity{}, attestor.Refusef(attestor.ReasonUnknownKey, "token names no key (kid)")
	}
	pub, err := v.keys.key(ctx, tok.Header.Kid, now)
	if err != nil {
		return identity{}, err
	}
	if err := tok.Verify(pub); err != nil {
		if errors.Is(err, athenz.ErrUnsupportedAlgorithm) {
			return identity{}, attestor.Wrap(attestor.ReasonUnsupportedAlgorithm, err, "token algorithm does not fit its key")
		}
		return identity{}, attestor.Wrap(attestor.ReasonBadSignature, err, "token signature does not verify")
	}
	c, err := parseClaims(tok.Payload)
	switch {
	case errors.Is(err, errNotBound):
		return identity{}, attestor.Wrap(attestor.ReasonNotBound, err, "the token is not bound to a pod (use a projected service-account token)")
	case err != nil:
		return identity{}, attestor.Wrap(attestor.ReasonMalformed, err, "token claims are not those of a service-account token")
	}
	skew := v.cfg.Skew
	switch {
	case c.issuer != v.issuer:
		return identity{}, attestor.Refusef(attestor.ReasonWrongIssuer, "token issuer %.200q, want %q", c.issuer, v.issuer)
	case !intersects(c.audience, v.cfg.Audiences):
		return identity{}, attestor.Refusef(attestor.ReasonWrongAudience, "token audiences %.200q, want one of %q", c.audience, v.cfg.Audiences)
	case !now.Before(time.Unix(c.expiry, 0).Add(skew)):
		return identity{}, attestor.Refusef(attestor.ReasonExpired, "token expired at %s", time.Unix(c.expiry, 0).UTC().Format(time.RFC3339))
	case time.Unix(c.issuedAt, 0).After(now.Add(skew)), c.notBefore > 0 && time.Unix(c.notBefore, 0).After(now.Add(skew)):
		return identity{}, attestor.Refusef(attestor.ReasonNotYetValid, "token is not valid before %s", time.Unix(max(c.issuedAt, c.notBefore), 0).UTC().Format(time.RFC3339))
	}
	return c.identity, nil
}

// result maps a proven identity and binds the request to it.
func (v *Verifier) result(id identity, r *attestor.Request) (*attestor.Result, error) {
	domain, service, ok := v.mapping.Map(id.namespace, id.serviceAccount)
	if !ok {
		return nil, attestor.Refusef(attestor.ReasonUnmapped, "service account %s/%s maps to no Athenz service", id.namespace, id.serviceAccount)
	}
	if err := r.MatchService(domain, service); err != nil {
		return nil, err
	}
	instance := id.podUID
	if v.cfg.InstanceID == InstanceIDPodName {
		instance = id.podName
	}
	if err := r.MatchInstanceID(instance); err != nil {
		return nil, err
	}
	if r.Namespace != "" && r.Namespace != id.namespace {
		return nil, attestor.Refusef(attestor.ReasonIdentityMismatch, "the token is from namespace %q, the request names %.100q", id.namespace, r.Namespace)
	}
	attrs := map[string]string{
		"namespace":           id.namespace,
		"service_account":     id.serviceAccount,
		"service_account_uid": id.serviceAccountUID,
		"pod_name":            id.podName,
		"pod_uid":             id.podUID,
	}
	if id.nodeName != "" {
		attrs["node_name"] = id.nodeName
	}
	if id.tokenID != "" {
		attrs["token_id"] = id.tokenID
	}
	return &attestor.Result{
		Domain:      domain,
		Service:     service,
		InstanceID:  instance,
		Refreshable: true,
		MaxValidity: v.cfg.MaxValidity,
		Namespace:   id.namespace,
		Attributes:  attrs,
	}, nil
}

var _ attestor.FormatVerifier = (*Verifier)(nil)
