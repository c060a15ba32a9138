package issuer

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	pb "istio.io/api/security/v1alpha1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
	"github.com/athenz-mesh/athenz-mesh/issuer/ca"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// routeIstio is the route label of CreateCertificate in metrics and audit lines.
const routeIstio = "istio_create_certificate"

// Metadata keys istio-agent sends with CreateCertificate (gRPC lower-cases them).
const (
	mdAuthorization = "authorization"
	mdClusterID     = "clusterid"
)

// istioMaxStreams bounds the concurrent calls on one connection to the Istio CA API:
// callers are not authenticated until their token is verified.
const istioMaxStreams = 256

// istioCA serves istio.v1.auth.IstioCertificateService. It holds one Kubernetes token
// verifier per configured cluster, built once; CreateCertificate only looks them up.
type istioCA struct {
	pb.UnimplementedIstioCertificateServiceServer
	s        *Server
	cfg      IstioConfig
	clusters map[string]*k8s.Verifier
	refusals *tokenRefusals
	tls      *tls.Config // its own copy: the HTTPS server edits the issuer's as it starts
}

// newIstioCA builds the verifiers of the configured clusters and the TLS configuration:
// the issuer's server certificate, no client certificates (the token authenticates).
// Nothing is fetched yet. s.tls must be set and not yet in use.
func newIstioCA(s *Server) (*istioCA, error) {
	c := &istioCA{s: s, cfg: s.cfg.Istio, clusters: make(map[string]*k8s.Verifier, len(s.cfg.Istio.Clusters)), refusals: newTokenRefusals()}
	c.tls = s.tls.Clone()
	c.tls.ClientAuth = tls.NoClientCert
	c.tls.VerifyPeerCertificate = nil
	c.tls.NextProtos = []string{"h2"}
	for _, cl := range c.cfg.Clusters {
		v, err := k8s.NewVerifier(c.cfg.verifierConfig(cl))
		if err != nil {
			return nil, fmt.Errorf("istio cluster %s: %w", cl.ID, err)
		}
		c.clusters[cl.ID] = v
	}
	return c, nil
}

// istioError is a refusal of CreateCertificate: the gRPC status the caller sees, a short
// fixed reason for the metrics and the audit line, and the cause for the log only.
type istioError struct {
	code    codes.Code
	reason  string
	message string
	cause   error
}

func (e *istioError) Error() string { return e.code.String() + " " + e.reason + ": " + e.message }

func istioRefuse(code codes.Code, reason, format string, args ...any) *istioError {
	return &istioError{code: code, reason: reason, message: fmt.Sprintf(format, args...)}
}

// fromAPIError turns a refusal of the shared issuance code into a gRPC status.
func fromAPIError(ae *apiError) *istioError {
	code := codes.Internal
	switch ae.status {
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden, http.StatusNotFound:
		code = codes.PermissionDenied
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	return &istioError{code: code, reason: ae.reason, message: ae.message, cause: ae.cause}
}

// istioCaller is what a verified token proves.
type istioCaller struct {
	cluster, namespace, serviceAccount string
	domain, service, podUID            string
	attributes                         map[string]string
}

// CreateCertificate authenticates the caller by its service-account token and cluster,
// checks that the CSR asks for exactly the caller's Istio SPIFFE ID, authorizes the launch
// of the mapped Athenz service, signs, records and answers the chain leaf first, root last.
func (c *istioCA) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	start := time.Now()
	ip := peerIP(ctx)
	resp, who, err := c.create(ctx, req, ip)
	code := codes.OK
	if err != nil {
		var ie *istioError
		if !errors.As(err, &ie) {
			ie = &istioError{code: codes.Internal, reason: reasonInternal, message: "internal error", cause: err}
		}
		code = ie.code
		c.s.metrics.refused.WithLabelValues(routeIstio, ie.reason).Inc()
		c.auditRefused(ctx, ie, who, ip)
		err = status.Error(ie.code, ie.message)
	}
	c.s.metrics.requests.WithLabelValues(routeIstio, code.String()).Inc()
	c.s.metrics.duration.WithLabelValues(routeIstio).Observe(time.Since(start).Seconds())
	return resp, err
}

func (c *istioCA) create(ctx context.Context, req *pb.IstioCertificateRequest, ip string) (*pb.IstioCertificateResponse, *istioCaller, error) {
	who, err := c.authenticate(ctx, ip)
	if err != nil {
		return nil, who, err
	}
	csr, err := ca.ParseCSR([]byte(req.GetCsr()))
	if err != nil {
		return nil, who, istioRefuse(codes.InvalidArgument, reasonBadCSR, "%v", err)
	}
	spiffeID := "spiffe://" + c.cfg.TrustDomain + "/ns/" + who.namespace + "/sa/" + who.serviceAccount
	if err := checkIstioSANs(csr.DNSNames, csr.EmailAddresses, csr.IPAddresses, csr.URIs, spiffeID); err != nil {
		return nil, who, err
	}
	issueReq, err := ca.CheckServiceCSR(csr, ca.ServiceIdentity{
		Domain: who.domain, Service: who.service, SpiffeID: spiffeID, AllowEmptyCN: true, Subject: c.s.subjectPolicy(),
	})
	switch {
	case errors.Is(err, ca.ErrCSRRefused):
		return nil, who, istioRefuse(codes.PermissionDenied, "csr_identity", "%v", err)
	case err != nil:
		return nil, who, &istioError{code: codes.Internal, reason: reasonInternal, message: "certificate request check failed", cause: err}
	}
	snap := c.s.snap()
	if err := c.s.authorizeLaunch(snap, c.cfg.Provider, who.domain, who.service); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, who, fromAPIError(ae)
		}
		return nil, who, err
	}
	if d := req.GetValidityDuration(); d > 0 {
		issueReq.Validity = time.Duration(min(d, math.MaxInt64/int64(time.Second))) * time.Second
	}
	issueReq.MaxValidity = capValidity(c.cfg.MaxValidity, snap.serviceCertCap(who.domain))
	issued, err := c.s.issueFor(ctx, ip, issueReq, record{
		kind: store.KindService, provider: c.cfg.Provider, domain: who.domain, service: who.service, instanceID: who.podUID,
	})
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, who, fromAPIError(ae)
		}
		return nil, who, err
	}
	chain := []string{string(issued.CertPEM)}
	for _, ic := range c.s.ca.Chain() {
		chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ic.Raw})))
	}
	chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.s.ca.Root().Raw})))
	c.s.metrics.issued.WithLabelValues(kindServiceCert).Inc()
	c.s.log.LogAttrs(ctx, slog.LevelInfo, "issued", slog.String("route", routeIstio), slog.String("kind", kindServiceCert),
		slog.String("client_ip", ip), slog.String("principal", athenz.Principal(who.domain, who.service)),
		slog.String("spiffe_id", spiffeID), slog.String("cluster", who.cluster), slog.String("instance", who.podUID),
		slog.String("serial", serialOf(issued)), slog.Time("not_after", issued.Certificate.NotAfter),
		slog.Any("attestation", who.attributes))
	return &pb.IstioCertificateResponse{CertChain: chain}, who, nil
}

// checkIstioSANs requires the CSR's names to be exactly one URI, the caller's SPIFFE ID.
func checkIstioSANs(dns, emails []string, ips []net.IP, uris []*url.URL, want string) error {
	switch {
	case len(dns) > 0:
		return istioRefuse(codes.PermissionDenied, "extra_san", "the CSR asks for DNS name %.100q; it may carry only the SPIFFE ID %q", dns[0], want)
	case len(emails) > 0:
		return istioRefuse(codes.PermissionDenied, "extra_san", "the CSR asks for email %.100q; it may carry only the SPIFFE ID %q", emails[0], want)
	case len(ips) > 0:
		return istioRefuse(codes.PermissionDenied, "extra_san", "the CSR asks for IP %s; it may carry only the SPIFFE ID %q", ips[0], want)
	case len(uris) == 0:
		return istioRefuse(codes.PermissionDenied, "san_mismatch", "the CSR carries no SPIFFE ID; want the URI SAN %q", want)
	case len(uris) > 1:
		return istioRefuse(codes.PermissionDenied, "extra_san", "the CSR carries %d URI SANs; want only the SPIFFE ID %q", len(uris), want)
	}
	got := uris[0].String()
	if got == want {
		return nil
	}
	if uris[0].Scheme == "spiffe" {
		if td := strings.TrimPrefix(want, "spiffe://"); !strings.HasPrefix(td, uris[0].Host+"/") {
			return istioRefuse(codes.PermissionDenied, "san_mismatch", "the CSR asks for %.200q in trust domain %.100q; this mesh's trust domain makes the caller %q", got, uris[0].Host, want)
		}
	}
	return istioRefuse(codes.PermissionDenied, "san_mismatch", "the CSR asks for %.200q, but the token proves %q", got, want)
}

// authenticate verifies the bearer service-account token with the verifier of the
// caller's cluster, exactly as the Kubernetes attestor verifies register requests. A
// token refused in the last istioRefusalTTL is refused again without asking the
// verifier (tokenRefusals).
func (c *istioCA) authenticate(ctx context.Context, ip string) (*istioCaller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	switch auth := md.Get(mdAuthorization); {
	case len(auth) == 0:
		return nil, istioRefuse(codes.Unauthenticated, reasonUnauthenticated, "no service-account token: send \"authorization: Bearer <token>\" metadata (istio-agent does)")
	case len(auth) > 1:
		return nil, istioRefuse(codes.Unauthenticated, reasonUnauthenticated, "more than one authorization metadata value")
	default:
		scheme, rest, ok := strings.Cut(auth[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			return nil, istioRefuse(codes.Unauthenticated, reasonUnauthenticated, "authorization metadata is not \"Bearer <token>\"")
		}
		token = strings.TrimSpace(rest)
	}
	var cluster string
	switch ids := md.Get(mdClusterID); {
	case len(ids) != 1 || ids[0] == "":
		return nil, istioRefuse(codes.Unauthenticated, "unknown_cluster", "want exactly one ClusterID metadata value (istio-agent's CLUSTER_ID)")
	default:
		cluster = ids[0]
	}
	v := c.clusters[cluster]
	if v == nil {
		return nil, istioRefuse(codes.Unauthenticated, "unknown_cluster", "cluster %.100q is not configured on this issuer (istio.clusters)", cluster)
	}
	who := &istioCaller{cluster: cluster}
	now := c.s.now()
	if ie, ok := c.refusals.get(cluster, token, now); ok {
		return who, ie
	}
	res, err := v.Verify(ctx, &attestor.Request{Provider: c.cfg.Provider, AttestationData: token, ClientIP: ip, Now: now})
	if err != nil {
		reason := attestor.ReasonOf(err)
		msg := "service-account token refused (" + string(reason) + "): " + attestor.MessageOf(err)
		code := codes.Unauthenticated
		switch reason {
		case attestor.ReasonUnavailable:
			code = codes.Unavailable
		case attestor.ReasonUnmapped:
			code = codes.PermissionDenied
		}
		ie := &istioError{code: code, reason: "attestation_" + string(reason), message: msg, cause: err}
		c.refusals.add(cluster, token, ie, reason, now)
		return who, ie
	}
	who.namespace, who.serviceAccount = res.Namespace, res.Attributes["service_account"]
	who.domain, who.service, who.podUID, who.attributes = res.Domain, res.Service, res.Attributes["pod_uid"], res.Attributes
	if who.namespace == "" || who.serviceAccount == "" || who.podUID == "" {
		return who, &istioError{code: codes.Internal, reason: reasonInternal, message: "internal error", cause: errors.New("the Kubernetes verifier returned no namespace, service account or pod")}
	}
	return who, nil
}

// auditRefused writes the "refused" audit line.
func (c *istioCA) auditRefused(ctx context.Context, ie *istioError, who *istioCaller, ip string) {
	attrs := []slog.Attr{
		slog.String("route", routeIstio), slog.String("code", ie.code.String()), slog.String("reason", ie.reason),
		slog.String("message", ie.message), slog.String("client_ip", ip),
	}
	if who != nil {
		attrs = append(attrs, slog.String("cluster", who.cluster))
		if who.namespace != "" {
			attrs = append(attrs, slog.String("namespace", who.namespace), slog.String("service_account", who.serviceAccount))
		}
	}
	level := slog.LevelInfo
	if ie.code == codes.Internal || ie.code == codes.Unavailable {
		level = slog.LevelError
	}
	if ie.cause != nil {
		attrs = append(attrs, slog.String("error", ie.cause.Error()))
	}
	c.s.log.LogAttrs(ctx, level, "refused", attrs...)
}

// peerIP is the caller's address without its port.
func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

// grpcServer builds the gRPC server of the Istio CA API: TLS, the service, and gRPC
// health reporting SERVING for it and for "". Its callers are unauthenticated until
// their token is verified, so streams per connection are bounded and clients pinging
// more often than every 5 s are closed (GOAWAY too_many_pings).
func (c *istioCA) grpcServer() (*grpc.Server, *health.Server) {
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(c.tls)),
		grpc.MaxRecvMsgSize(int(c.s.cfg.Listen.MaxBodyBytes)),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(istioMaxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	pb.RegisterIstioCertificateServiceServer(gs, c)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.IstioCertificateService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs, hs
}

// serve serves the Istio CA API on ln until ctx is done, then stops gracefully
// within the shutdown grace.
func (c *istioCA) serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	gs, hs := c.grpcServer()
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	c.s.log.Info("istio CA API listening", "address", ln.Addr().String(), "trust_domain", c.cfg.TrustDomain, "clusters", len(c.clusters))
	select {
	case err := <-errc:
		return fmt.Errorf("istio CA API: %w", err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		gs.Stop()
		<-stopped
	}
	return nil
}
