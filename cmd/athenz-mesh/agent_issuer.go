package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/sds"
)

// agentIssuer is the sds.Issuer the agent uses: the issuer's typed client, over TLS
// trusting the configured CA, with one HTTP transport per identity that presents that
// identity's current certificate (tls.Config.GetClientCertificate). A transport is
// replaced, and its idle connections closed, as soon as the identity's certificate
// changes: the issuer accepts a refresh only with the current certificate, and a pooled
// connection keeps the certificate it was opened with.
type agentIssuer struct {
	base    string
	roots   *x509.CertPool // nil: system roots
	timeout time.Duration
	anon    *issuer.Client
	anonTr  *http.Transport

	mu      sync.Mutex
	clients map[string]*mtlsClient // by principal
}

type mtlsClient struct {
	fingerprint [32]byte
	client      *issuer.Client
	transport   *http.Transport
}

var _ sds.Issuer = (*agentIssuer)(nil)

// newAgentIssuer builds the adapter. caFile may be empty (system roots).
func newAgentIssuer(baseURL, caFile string, timeout time.Duration) (*agentIssuer, error) {
	a := &agentIssuer{base: baseURL, timeout: timeout, clients: map[string]*mtlsClient{}}
	if a.timeout <= 0 {
		a.timeout = 30 * time.Second
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("issuer.ca_file: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("issuer.ca_file %s: no PEM certificate in it", caFile)
		}
	}
	a.anonTr = a.transport(nil)
	anon, err := issuer.NewClient(issuer.ClientConfig{BaseURL: baseURL, HTTPClient: a.httpClient(a.anonTr)})
	if err != nil {
		return nil, err
	}
	a.anon = anon
	return a, nil
}

func (a *agentIssuer) transport(cert *tls.Certificate) *http.Transport {
	cfg := &tls.Config{RootCAs: a.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: cfg, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
	}
}

func (a *agentIssuer) httpClient(tr *http.Transport) *http.Client {
	return &http.Client{Transport: tr, Timeout: a.timeout}
}

// clientFor returns the client presenting cred, making a new one when the identity's
// certificate changed.
func (a *agentIssuer) clientFor(cred *sds.Credential) (*issuer.Client, error) {
	if cred == nil || len(cred.Chain) == 0 || cred.Key == nil {
		return nil, errors.New("no client certificate")
	}
	leaf := cred.Chain[0]
	fp := sha256.Sum256(leaf.Raw)
	name := leaf.Subject.CommonName
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[name]; c != nil {
		if c.fingerprint == fp {
			return c.client, nil
		}
		c.transport.CloseIdleConnections()
	}
	cert := &tls.Certificate{PrivateKey: cred.Key, Leaf: leaf}
	for _, c := range cred.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	tr := a.transport(cert)
	client, err := issuer.NewClient(issuer.ClientConfig{BaseURL: a.base, HTTPClient: a.httpClient(tr)})
	if err != nil {
		return nil, err
	}
	a.clients[name] = &mtlsClient{fingerprint: fp, client: client, transport: tr}
	return client, nil
}

// close closes every idle connection.
func (a *agentIssuer) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.clients {
		c.transport.CloseIdleConnections()
	}
	a.anonTr.CloseIdleConnections()
}

// Register implements sds.Issuer.
func (a *agentIssuer) Register(ctx context.Context, req *sds.RegisterRequest) (*sds.IssuedIdentity, error) {
	id, err := a.anon.RegisterInstance(ctx, &issuer.InstanceRegisterInformation{
		Provider: req.Provider, Domain: req.Domain, Service: req.Service, AttestationData: req.AttestationData,
		CSR: string(req.CSR), ExpiryTime: minutes32(req.Validity), Namespace: req.Namespace,
	})
	if err != nil {
		return nil, issuerErr(err)
	}
	return issuedIdentity(id), nil
}

// Refresh implements sds.Issuer.
func (a *agentIssuer) Refresh(ctx context.Context, client *sds.Credential, req *sds.RefreshRequest) (*sds.IssuedIdentity, error) {
	c, err := a.clientFor(client)
	if err != nil {
		return nil, err
	}
	id, err := c.RefreshInstance(ctx, req.Provider, req.Domain, req.Service, req.InstanceID,
		&issuer.InstanceRefreshInformation{CSR: string(req.CSR), ExpiryTime: minutes32(req.Validity)})
	if err != nil {
		return nil, issuerErr(err)
	}
	return issuedIdentity(id), nil
}

// RoleCertificate implements sds.Issuer.
func (a *agentIssuer) RoleCertificate(ctx context.Context, client *sds.Credential, req *sds.RoleCertRequest) ([]byte, error) {
	c, err := a.clientFor(client)
	if err != nil {
		return nil, err
	}
	var exp int64
	if m := minutes32(req.Validity); m != nil {
		exp = int64(*m)
	}
	rc, err := c.GetRoleCertificate(ctx, &issuer.RoleCertificateRequest{CSR: string(req.CSR), ExpiryTime: exp})
	if err != nil {
		return nil, issuerErr(err)
	}
	return []byte(rc.X509Certificate), nil
}

// AccessToken implements sds.Issuer: scope "<d>:role.<r> ..." or "<d>:domain".
func (a *agentIssuer) AccessToken(ctx context.Context, client *sds.Credential, req sds.AccessTokenRequest) (*sds.Token, error) {
	c, err := a.clientFor(client)
	if err != nil {
		return nil, err
	}
	scope := req.Domain + ":domain"
	if len(req.Roles) > 0 {
		parts := make([]string, len(req.Roles))
		for i, r := range req.Roles {
			parts[i] = athenz.JoinRoleName(req.Domain, r)
		}
		scope = strings.Join(parts, " ")
	}
	start := time.Now()
	resp, err := c.GetAccessToken(ctx, scope, req.ExpiresIn)
	if err != nil {
		return nil, issuerErr(err)
	}
	if resp.AccessToken == "" || resp.ExpiresIn <= 0 {
		return nil, errors.New("issuer: access token response without a token or expires_in")
	}
	return &sds.Token{Value: resp.AccessToken, Expiry: start.Add(time.Duration(resp.ExpiresIn) * time.Second)}, nil
}

// RoleToken implements sds.Issuer.
func (a *agentIssuer) RoleToken(ctx context.Context, client *sds.Credential, req sds.RoleTokenRequest) (*sds.Token, error) {
	c, err := a.clientFor(client)
	if err != nil {
		return nil, err
	}
	rt, err := c.GetRoleToken(ctx, req.Domain, req.Roles, req.MinExpiry, req.MaxExpiry)
	if err != nil {
		return nil, issuerErr(err)
	}
	exp := time.Unix(rt.ExpiryTime, 0)
	if rt.ExpiryTime == 0 {
		t, err := athenz.ParseRoleToken(rt.Token)
		if err != nil {
			return nil, fmt.Errorf("issuer: role token: %w", err)
		}
		exp = t.ExpiryTime
	}
	return &sds.Token{Value: rt.Token, Expiry: exp}, nil
}

// issuerErr turns the client's error answers into the sds contract (an IssuerStatusError).
func issuerErr(err error) error {
	var ie *issuer.Error
	if errors.As(err, &ie) {
		return &sds.IssuerError{Status: ie.Code, Message: ie.Message}
	}
	return err
}

func issuedIdentity(id *issuer.InstanceIdentity) *sds.IssuedIdentity {
	return &sds.IssuedIdentity{InstanceID: id.InstanceID, CertificatePEM: []byte(id.X509Certificate), SignerPEM: []byte(id.X509CertificateSigner)}
}

// minutes32 is a lifetime in whole minutes (at least 1) for ZTS's expiryTime; nil for
// zero (the issuer's default).
func minutes32(d time.Duration) *int32 {
	if d <= 0 {
		return nil
	}
	m := int32(max(d/time.Minute, 1))
	return &m
}
