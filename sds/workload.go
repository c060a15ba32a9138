package sds

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// JWTSigner mints JWT-SVIDs for the Workload API. The issuer provides it (the agent asks
// the issuer, which holds the signing key); without one, FetchJWTSVID answers
// Unimplemented.
type JWTSigner interface {
	// SignJWTSVID returns a signed JWT-SVID for spiffeID with the given audiences
	// (at least one).
	SignJWTSVID(ctx context.Context, spiffeID string, audience []string) (string, error)
}

// workloadSecurityHeader is the metadata key every Workload API call must carry with the
// value "true" (SPIFFE Workload Endpoint spec, section 5.1): it stops browsers and SSRF
// from reaching the API through a proxy.
const workloadSecurityHeader = "workload.spiffe.io"

// workloadService implements the SPIFFE Workload API over the cache. It shares the SDS
// service's peer authorization, cache, logs and shutdown signal.
type workloadService struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	sds    *sdsService
	signer JWTSigner
}

var _ workload.SpiffeWorkloadAPIServer = (*workloadService)(nil)

func checkSecurityHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if slices.Contains(md.Get(workloadSecurityHeader), "true") {
		return nil
	}
	return status.Error(codes.InvalidArgument, "security header missing from request")
}

// grant authorizes a Workload API caller. Undecided authorization is Unavailable (the
// go-spiffe client retries with backoff); a peer entitled to nothing is PermissionDenied.
func (w *workloadService) grant(ctx context.Context, api string) (peerGrant, error) {
	if err := checkSecurityHeader(ctx); err != nil {
		return peerGrant{}, err
	}
	g, peer, err := w.sds.authorize(ctx)
	if err != nil {
		w.sds.limited.Log(slog.LevelWarn, "workload API peer authorization failed", "api", api, "peer", peer.String(), "error", err)
		return g, status.Errorf(codes.Unavailable, "cannot identify the calling workload yet: %v", err)
	}
	if len(g.Identities) == 0 {
		w.sds.limited.Log(slog.LevelWarn, "workload API peer not entitled", "api", api, "peer", peer.String(), "reason", g.Reason)
		return g, status.Errorf(codes.PermissionDenied, "no identity issued: %s", g.Reason)
	}
	return g, nil
}

// watchLoop calls send now and after every change of the identities in ids (and the
// bundle) until the client leaves or the server stops. send returns a key describing
// what it sent ("" for nothing), and is not asked to send the same key twice in a row.
func (w *workloadService) watchLoop(ctx context.Context, api string, ids []string, send func(last string) (string, error)) error {
	watch := w.sds.cache.Watch()
	defer watch.Close()
	watch.Follow(ids, true)
	w.sds.metrics.streams.WithLabelValues(api).Inc()
	defer w.sds.metrics.streams.WithLabelValues(api).Dec()
	last := ""
	for {
		key, err := send(last)
		if err != nil {
			return err
		}
		if key != last && key != "" {
			last = key
			w.sds.metrics.responses.WithLabelValues(api).Inc()
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-w.sds.stopping:
			return status.Error(codes.Unavailable, "agent shutting down")
		case <-watch.C():
		}
	}
}

// svids returns the cache entries of the grant's identities that are present and carry
// a SPIFFE ID, in grant order.
func (w *workloadService) svids(g *peerGrant) []*CredentialEntry {
	var out []*CredentialEntry
	for _, id := range g.Identities {
		if e, ok := w.sds.cache.Identity(id); ok && e.SpiffeID != "" {
			out = append(out, e)
		}
	}
	return out
}

// trustDomains returns the bundle's trust domains followed by those of the SVIDs.
func trustDomains(b *BundleEntry, svids []*CredentialEntry) []string {
	tds := slices.Clone(b.TrustDomains)
	for _, e := range svids {
		if id, err := spiffeid.FromString(e.SpiffeID); err == nil && !slices.Contains(tds, id.TrustDomain().Name()) {
			tds = append(tds, id.TrustDomain().Name())
		}
	}
	return tds
}

func versionKey(b *BundleEntry, svids []*CredentialEntry) string {
	var sb strings.Builder
	sb.WriteString(strconv.FormatUint(b.Version, 10))
	for _, e := range svids {
		sb.WriteByte('.')
		sb.WriteString(strconv.FormatUint(e.Version, 10))
	}
	return sb.String()
}

// FetchX509SVID streams the peer's X.509-SVIDs (default identity first, the Athenz
// principal as the hint) with the trust bundle, and again after every rotation. Nothing
// is sent until at least one certificate and the bundle are in the cache.
func (w *workloadService) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	g, err := w.grant(ctx, apiX509SVID)
	if err != nil {
		return err
	}
	return w.watchLoop(ctx, apiX509SVID, g.Identities, func(last string) (string, error) {
		b, ok := w.sds.cache.Bundle()
		svids := w.svids(&g)
		if !ok || len(svids) == 0 {
			return "", nil
		}
		key := versionKey(b, svids)
		if key == last {
			return key, nil
		}
		resp := &workload.X509SVIDResponse{}
		for _, e := range svids {
			resp.Svids = append(resp.Svids, &workload.X509SVID{
				SpiffeId:    e.SpiffeID,
				X509Svid:    e.ChainDER,
				X509SvidKey: e.KeyDER,
				Bundle:      b.RootsDER,
				Hint:        e.Identity,
			})
		}
		return key, stream.Send(resp)
	})
}

// FetchX509Bundles streams the trust bundle, keyed by trust domain, and again after every
// change. The bundle is public: any local peer may have it.
func (w *workloadService) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	if err := checkSecurityHeader(ctx); err != nil {
		return err
	}
	g, _, err := w.sds.authorize(ctx)
	if err != nil {
		g = peerGrant{}
	}
	return w.watchLoop(ctx, apiBundles, g.Identities, func(last string) (string, error) {
		b, ok := w.sds.cache.Bundle()
		if !ok {
			return "", nil
		}
		svids := w.svids(&g)
		tds := trustDomains(b, svids)
		if len(tds) == 0 {
			return "", nil
		}
		key := versionKey(b, svids)
		if key == last {
			return key, nil
		}
		resp := &workload.X509BundlesResponse{Bundles: make(map[string][]byte, len(tds))}
		for _, td := range tds {
			resp.Bundles[td] = b.RootsDER
		}
		return key, stream.Send(resp)
	})
}

// FetchJWTSVID mints JWT-SVIDs through the JWTSigner: for the requested SPIFFE ID, which
// must be one of the peer's, or for each of the peer's identities.
func (w *workloadService) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := checkSecurityHeader(ctx); err != nil {
		return nil, err
	}
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if w.signer == nil {
		return nil, status.Error(codes.Unimplemented, "JWT-SVIDs are not enabled on this agent (no JWT signer configured)")
	}
	g, err := w.grant(ctx, apiJWT)
	if err != nil {
		return nil, err
	}
	svids := w.svids(&g)
	if want := req.GetSpiffeId(); want != "" {
		svids = slices.DeleteFunc(svids, func(e *CredentialEntry) bool { return e.SpiffeID != want })
		if len(svids) == 0 {
			return nil, status.Errorf(codes.PermissionDenied, "no identity issued for %s", want)
		}
	}
	if len(svids) == 0 {
		return nil, status.Error(codes.Unavailable, "the workload's identity has not been issued yet")
	}
	resp := &workload.JWTSVIDResponse{}
	for _, e := range svids {
		tok, err := w.signer.SignJWTSVID(ctx, e.SpiffeID, req.GetAudience())
		if err != nil {
			w.sds.log.Warn("workload API JWT-SVID signing failed", "spiffe_id", e.SpiffeID, "error", err)
			return nil, status.Errorf(codes.Unavailable, "sign JWT-SVID for %s: %v", e.SpiffeID, err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.SpiffeID, Svid: tok, Hint: e.Identity})
	}
	w.sds.metrics.responses.WithLabelValues(apiJWT).Inc()
	return resp, nil
}

// jwtUnavailable is the error when the bundle has no JWT authorities.
func (w *workloadService) jwtUnavailable() error {
	if w.signer == nil {
		return status.Error(codes.Unimplemented, "JWT-SVIDs are not enabled on this agent (no JWT signer or JWT authorities configured)")
	}
	return status.Error(codes.Unavailable, "the JWT bundle has not been loaded yet")
}

// FetchJWTBundles streams the JWT authorities as a JWKS per trust domain, and again after
// every change.
func (w *workloadService) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	if err := checkSecurityHeader(ctx); err != nil {
		return err
	}
	if b, ok := w.sds.cache.Bundle(); w.signer == nil && (!ok || b.JWKS == nil) {
		return w.jwtUnavailable()
	}
	g, _, err := w.sds.authorize(ctx)
	if err != nil {
		g = peerGrant{}
	}
	return w.watchLoop(ctx, apiJWT, g.Identities, func(last string) (string, error) {
		b, ok := w.sds.cache.Bundle()
		if !ok || b.JWKS == nil {
			return "", nil
		}
		svids := w.svids(&g)
		tds := trustDomains(b, svids)
		if len(tds) == 0 {
			return "", nil
		}
		key := versionKey(b, svids)
		if key == last {
			return key, nil
		}
		resp := &workload.JWTBundlesResponse{Bundles: make(map[string][]byte, len(tds))}
		for _, td := range tds {
			resp.Bundles[td] = b.JWKS
		}
		return key, stream.Send(resp)
	})
}

// ValidateJWTSVID checks a JWT-SVID's signature against the JWT authorities, its expiry
// and its audience, and returns its SPIFFE ID and claims. When Bundle.TrustDomains is set
// only tokens of those trust domains are accepted; otherwise the authorities are trusted
// for any trust domain (with Athenz's spiffe://<domain>/... form, every Athenz domain is
// one).
func (w *workloadService) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if err := checkSecurityHeader(ctx); err != nil {
		return nil, err
	}
	if req.GetAudience() == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	b, ok := w.sds.cache.Bundle()
	if !ok || b.JWKS == nil {
		return nil, w.jwtUnavailable()
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), jwtSource{b}, []string{req.GetAudience()})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid JWT-SVID: %v", err)
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// jwtSource serves the bundle's JWT authorities for the trust domains it accepts.
type jwtSource struct{ b *BundleEntry }

func (s jwtSource) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	if len(s.b.TrustDomains) > 0 && !slices.Contains(s.b.TrustDomains, td.Name()) {
		return nil, fmt.Errorf("no JWT bundle for trust domain %q", td.Name())
	}
	keys := make(map[string]crypto.PublicKey, len(s.b.JWTAuthorities))
	for k, v := range s.b.JWTAuthorities {
		keys[k] = v
	}
	return jwtbundle.FromJWTAuthorities(td, keys), nil
}
