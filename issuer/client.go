package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the API prefix, e.g. "https://issuer.example:4443/zts/v1". Required.
	BaseURL string
	// HTTPClient carries TLS: its transport trusts the issuer's CA and, for the routes
	// that need one, presents the workload's current certificate. Nil:
	// http.DefaultClient (no client certificate).
	HTTPClient *http.Client
	// NToken, when set, returns an n-token sent in NTokenHeader with every request
	// (register, refresh and role certificates ignore it server-side).
	NToken func() (string, error)
	// NTokenHeader is the n-token header. Empty: DefaultNTokenHeader.
	NTokenHeader string
	// MaxResponseBytes bounds a response body. Zero: 64 MiB (bundles can be large).
	MaxResponseBytes int64
}

// Client is a typed client of the issuer's ZTS API, for the agent and tools. It is safe
// for concurrent use.
type Client struct {
	cfg ClientConfig
}

// Error is an error response of the API: the HTTP status and the Athenz error message.
type Error struct {
	Code    int
	Message string
}

// Error formats the response as "issuer: 403: <message>".
func (e *Error) Error() string { return fmt.Sprintf("issuer: %d: %s", e.Code, e.Message) }

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("issuer client: base URL %q: want https://host:port/zts/v1", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.NTokenHeader == "" {
		cfg.NTokenHeader = DefaultNTokenHeader
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = 64 << 20
	}
	return &Client{cfg: cfg}, nil
}

// RegisterInstance registers an instance (POST /instance) and returns its identity.
func (c *Client) RegisterInstance(ctx context.Context, req *InstanceRegisterInformation) (*InstanceIdentity, error) {
	var out InstanceIdentity
	if _, err := c.doJSON(ctx, http.MethodPost, "/instance", req, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RefreshInstance refreshes an instance's certificate over mTLS with its current one
// (POST /instance/{provider}/{domain}/{service}/{instanceId}).
func (c *Client) RefreshInstance(ctx context.Context, provider, domain, service, instanceID string, req *InstanceRefreshInformation) (*InstanceIdentity, error) {
	var out InstanceIdentity
	path := "/instance/" + url.PathEscape(provider) + "/" + url.PathEscape(domain) + "/" + url.PathEscape(service) + "/" + url.PathEscape(instanceID)
	if _, err := c.doJSON(ctx, http.MethodPost, path, req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRoleCertificate asks for a role certificate (POST /rolecert) over mTLS.
func (c *Client) GetRoleCertificate(ctx context.Context, req *RoleCertificateRequest) (*RoleCertificate, error) {
	var out RoleCertificate
	if _, err := c.doJSON(ctx, http.MethodPost, "/rolecert", req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAccessToken asks for an access token (POST /oauth2/token) for scope, e.g.
// "sports:domain" or "sports:role.readers sports:role.writers". A zero expiresIn means
// the server default.
func (c *Client) GetAccessToken(ctx context.Context, scope string, expiresIn time.Duration) (*AccessTokenResponse, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if expiresIn > 0 {
		form.Set("expires_in", strconv.FormatInt(int64(expiresIn/time.Second), 10))
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out AccessTokenResponse
	if _, err := c.do(req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRoleToken asks for a role token (GET /domain/{domain}/token) for roles, a list of
// short role names (empty: every role the caller holds in the domain). minExpiry and
// maxExpiry become minExpiryTime and maxExpiryTime in seconds; zero leaves them out (the
// server default). The caller authenticates over mTLS or with the n-token.
func (c *Client) GetRoleToken(ctx context.Context, domain string, roles []string, minExpiry, maxExpiry time.Duration) (*RoleToken, error) {
	q := url.Values{}
	if len(roles) > 0 {
		q.Set("role", strings.Join(roles, ","))
	}
	if minExpiry > 0 {
		q.Set("minExpiryTime", strconv.FormatInt(int64(minExpiry/time.Second), 10))
	}
	if maxExpiry > 0 {
		q.Set("maxExpiryTime", strconv.FormatInt(int64(maxExpiry/time.Second), 10))
	}
	path := "/domain/" + url.PathEscape(domain) + "/token"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	var out RoleToken
	if _, err := c.do(req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	if out.Token == "" {
		return nil, errors.New("issuer: role token response without a token")
	}
	return &out, nil
}

// FetchBundle fetches the OPA bundle (GET /bundle). With etag set it is sent as
// If-None-Match, and an unchanged bundle returns nil data and the same etag; with wait
// set the server holds the request until the bundle changes or wait passes (long poll).
func (c *Client) FetchBundle(ctx context.Context, etag string, wait time.Duration) (data []byte, newETag string, err error) {
	path := "/bundle"
	if wait > 0 && etag != "" {
		path += "?wait=" + strconv.FormatInt(int64(wait.Round(time.Second)/time.Second), 10)
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, "", err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("issuer: fetch bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, nil
	case http.StatusOK:
		data, err := c.readAll(resp.Body)
		if err != nil {
			return nil, "", err
		}
		return data, resp.Header.Get("ETag"), nil
	}
	return nil, "", c.errorFrom(resp)
}

// doJSON sends body as JSON and decodes a response of status want into out.
func (c *Client) doJSON(ctx context.Context, method, path string, body any, want int, out any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("issuer: encode request: %w", err)
	}
	req, err := c.newRequest(ctx, method, path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, want, out)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.cfg.NToken != nil {
		tok, err := c.cfg.NToken()
		if err != nil {
			return nil, fmt.Errorf("issuer: n-token: %w", err)
		}
		req.Header.Set(c.cfg.NTokenHeader, tok)
	}
	return req, nil
}

func (c *Client) do(req *http.Request, want int, out any) (*http.Response, error) {
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("issuer: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return resp, c.errorFrom(resp)
	}
	data, err := c.readAll(resp.Body)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp, fmt.Errorf("issuer: %s %s: decode response: %w", req.Method, req.URL.Path, err)
	}
	return resp, nil
}

func (c *Client) readAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("issuer: read response: %w", err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, fmt.Errorf("issuer: response larger than %d bytes", c.cfg.MaxResponseBytes)
	}
	return data, nil
}

// errorFrom reads an error response into an *Error.
func (c *Client) errorFrom(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body ErrorBody
	if json.Unmarshal(data, &body) != nil || body.Message == "" {
		body.Message = strings.TrimSpace(string(data))
		if body.Message == "" {
			body.Message = resp.Status
		}
	}
	return &Error{Code: resp.StatusCode, Message: body.Message}
}

// IsStatus reports whether err is an *Error with the given HTTP status.
func IsStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
