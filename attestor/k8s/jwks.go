package k8s

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// keyCache holds the cluster's token signing keys. Lookups of known key ids are lock
// free; an unknown key id, or keys older than maxAge, trigger a refetch, at most one at a
// time and at most one per minInterval, so a flood of tokens with made-up key ids cannot
// turn into a flood of requests to the API server. When a refetch fails the last good
// keys keep serving.
type keyCache struct {
	fetch       func(ctx context.Context) ([]byte, error)
	minInterval time.Duration
	maxAge      time.Duration
	timeout     time.Duration // bounds each fetch

	state atomic.Pointer[keyState]

	mu          sync.Mutex // serializes refetches; guards lastAttempt
	lastAttempt time.Time
}

type keyState struct {
	keys    athenz.StaticKeySet
	fetched time.Time
}

// key returns the key with id kid at time now.
func (c *keyCache) key(ctx context.Context, kid string, now time.Time) (crypto.PublicKey, error) {
	if k, ok := c.fresh(kid, now); ok {
		return k, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.fresh(kid, now); ok { // another caller refetched while this one waited
		return k, nil
	}
	s := c.state.Load()
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < c.minInterval {
		return lookup(s, kid, nil)
	}
	c.lastAttempt = now
	// The fetch serves every waiting caller, so one caller cancelling must not abort it
	// (and, through the rate limit, deny everyone a refresh); it gets its own deadline.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	b, err := c.fetch(fctx)
	var set athenz.StaticKeySet
	if err == nil {
		set, err = athenz.ParseJWKS(b)
	}
	if err == nil && len(set) == 0 {
		err = errors.New("the key set holds no RSA or EC signing key")
	}
	if err != nil {
		return lookup(s, kid, err)
	}
	s = &keyState{keys: set, fetched: now}
	c.state.Store(s)
	return lookup(s, kid, nil)
}

// fresh returns the key from keys fetched less than maxAge ago.
func (c *keyCache) fresh(kid string, now time.Time) (crypto.PublicKey, bool) {
	s := c.state.Load()
	if s == nil || now.Sub(s.fetched) >= c.maxAge {
		return nil, false
	}
	k, ok := s.keys[kid]
	return k, ok
}

// lookup answers from s, stale or not. fetchErr is the error of a refetch that just
// failed: when the key is not in s either, that outage, not the token, is the reason.
func lookup(s *keyState, kid string, fetchErr error) (crypto.PublicKey, error) {
	if s != nil {
		if k, ok := s.keys[kid]; ok {
			return k, nil
		}
	}
	switch {
	case fetchErr != nil:
		return nil, attestor.Unavailable("the cluster's signing keys (JWKS)", fetchErr)
	case s == nil:
		return nil, attestor.Unavailable("the cluster's signing keys (JWKS)", errors.New("not loaded yet; the last attempt failed"))
	}
	return nil, attestor.Refusef(attestor.ReasonUnknownKey, "token signed with key %.100q, which the cluster does not publish", kid)
}

// maxDocument bounds the discovery and JWKS documents read.
const maxDocument = athenz.MaxJWKSLength

// fetcher gets the JWKS document from a file, a URL or OIDC discovery.
type fetcher struct {
	issuer    string
	file      string
	url       string
	tokenFile string
	client    *http.Client
}

func (f *fetcher) fetch(ctx context.Context) ([]byte, error) {
	if f.file != "" {
		return readFileLimited(f.file, maxDocument)
	}
	jwksURL := f.url
	if jwksURL == "" {
		var err error
		if jwksURL, err = f.discover(ctx); err != nil {
			return nil, err
		}
	}
	return f.get(ctx, jwksURL)
}

// discover reads the issuer's OIDC discovery document and returns its jwks_uri. As OIDC
// Discovery requires, the document's issuer must be the configured issuer.
func (f *fetcher) discover(ctx context.Context) (string, error) {
	b, err := f.get(ctx, strings.TrimSuffix(f.issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("OIDC discovery document: %w", err)
	}
	if doc.Issuer != f.issuer {
		return "", fmt.Errorf("OIDC discovery document names issuer %.200q, want %q", doc.Issuer, f.issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("OIDC discovery document: jwks_uri %.200q is not an http(s) URL", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// get fetches a JSON document, with the bearer token when one is configured.
func (f *fetcher) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if f.tokenFile != "" {
		tok, err := readFileLimited(f.tokenFile, MaxTokenLength)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("GET %s: %w", u, err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	case len(b) > maxDocument:
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", u, maxDocument)
	}
	return b, nil
}

func readFileLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// newHTTPClient returns client, or one trusting the PEM roots in caFile (the system roots
// when caFile is empty) with the given timeout.
func newHTTPClient(client *http.Client, caFile string, timeout time.Duration) (*http.Client, error) {
	if client != nil {
		return client, nil
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := readFileLimited(caFile, maxDocument)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	return &http.Client{Transport: transport, Timeout: timeout}, nil
}
