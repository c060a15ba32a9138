package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/athenz-mesh/athenz-mesh/sds"
)

// agentIstioCA is the sds.IstioCA the agent uses in node mode with node.istio_ca: a gRPC
// client of the issuer's Istio CA API over TLS trusting issuer.ca_file, sending each
// pod's token as the bearer credential and the configured ClusterID, as istio-agent does.
// The connection is opened lazily and shared; safe for concurrent use.
type agentIstioCA struct {
	addr, clusterID string
	conn            *grpc.ClientConn
	client          pb.IstioCertificateServiceClient
}

var _ sds.IstioCA = (*agentIstioCA)(nil)

// newAgentIstioCA builds the client. caFile may be empty (system roots). Nothing is
// dialled yet.
func newAgentIstioCA(cfg *sds.AgentIstioCAConfig, caFile string) (*agentIstioCA, error) {
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("node.istio_ca.address: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cmpDefault(cfg.ServerName, host), NextProtos: []string{"h2"}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("issuer.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("issuer.ca_file %s: no PEM certificate in it", caFile)
		}
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("node.istio_ca.address %s: %w", cfg.Address, err)
	}
	return &agentIstioCA{addr: cfg.Address, clusterID: cfg.ClusterID, conn: conn, client: pb.NewIstioCertificateServiceClient(conn)}, nil
}

// CreateCertificate implements sds.IstioCA.
func (a *agentIstioCA) CreateCertificate(ctx context.Context, req *sds.IstioCertRequest) ([][]byte, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+req.Token, "ClusterID", a.clusterID)
	var secs int64
	if req.Validity > 0 {
		secs = int64(max(math.Ceil(req.Validity.Seconds()), 1))
	}
	resp, err := a.client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(req.CSR), ValidityDuration: secs})
	if err != nil {
		return nil, istioCAErr(a.addr, a.clusterID, err)
	}
	out := make([][]byte, len(resp.GetCertChain()))
	for i, c := range resp.GetCertChain() {
		out[i] = []byte(c)
	}
	return out, nil
}

// close closes the connection.
func (a *agentIstioCA) close() {
	if a != nil && a.conn != nil {
		a.conn.Close()
	}
}

// istioCAError is a refusal or failure of CreateCertificate, with the gRPC code the
// issuer answered. It implements sds.IssuerStatusError so that refusals count as such.
type istioCAError struct {
	addr, clusterID string
	code            codes.Code
	message         string
}

func (e *istioCAError) Error() string {
	return fmt.Sprintf("istio CA %s (cluster %s) answered %s: %s", e.addr, e.clusterID, e.code, e.message)
}

// IssuerStatus maps the gRPC code to the HTTP status of the same meaning.
func (e *istioCAError) IssuerStatus() int {
	switch e.code {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

func istioCAErr(addr, clusterID string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return &istioCAError{addr: addr, clusterID: clusterID, code: s.Code(), message: strings.TrimSpace(s.Message())}
	}
	return fmt.Errorf("istio CA %s: %w", addr, err)
}
