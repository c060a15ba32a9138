package sds

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// maxNamesPerStream bounds the resource names one stream or call may ask for. Envoy asks
// for a handful; the bound keeps a hostile peer from making the agent resolve and track
// millions.
const maxNamesPerStream = 1024

// sdsService implements envoy.service.secret.v3.SecretDiscoveryService: the protocol
// (versions, nonces, ACK/NACK, subscriptions) over the state in the Cache.
type sdsService struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer

	cache   *Cache
	auth    Authorizer
	mode    ValidationMode
	log     *slog.Logger
	limited *rateLimitedLog
	metrics *metrics
	memo    secretMemo

	// stopping is closed when the server shuts down: streams end so that a graceful
	// stop does not wait for clients that never hang up.
	stopping <-chan struct{}
	// retryMin and retryMax bound the backoff of streams whose authorization could not
	// be decided.
	retryMin, retryMax time.Duration
}

var _ secretv3.SecretDiscoveryServiceServer = (*sdsService)(nil)

// authorize returns the grant of the peer that made the call. An Authorizer error comes
// back as a pending grant with the error, which streams retry.
func (s *sdsService) authorize(ctx context.Context) (peerGrant, PeerCred, error) {
	p, ok := PeerCredFromContext(ctx)
	if !ok {
		return peerGrant{Grant: Grant{Reason: "the connection carries no peer credentials"}}, p, nil
	}
	g, err := s.auth.Authorize(ctx, p)
	if err != nil {
		return peerGrant{pending: true}, p, err
	}
	return peerGrant{Grant: g}, p, nil
}

func checkTypeURL(got string) error {
	if got != "" && got != SecretTypeURL {
		return status.Errorf(codes.InvalidArgument, "type_url %q: this server serves only %s", got, SecretTypeURL)
	}
	return nil
}

// FetchSecrets answers one request with the named secrets the peer may have and the
// cache holds. Names that are unknown, not entitled or not yet available are left out and
// logged; when none is left the call fails with NotFound, listing why.
func (s *sdsService) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	names := dedupe(req.GetResourceNames())
	if len(names) > maxNamesPerStream {
		return nil, status.Errorf(codes.InvalidArgument, "%d resource names, at most %d", len(names), maxNamesPerStream)
	}
	g, peer, err := s.authorize(ctx)
	if err != nil {
		s.limited.Log(slog.LevelWarn, "sds peer authorization failed", "peer", peer.String(), "error", err)
		return nil, status.Errorf(codes.Unavailable, "cannot identify the calling workload yet: %v", err)
	}
	rs, _ := s.resolveAll(&g, names)
	resources := make([]*anypb.Any, 0, len(rs))
	var why []string
	for _, r := range rs {
		switch r.status {
		case statusReady:
			resources = append(resources, r.secret)
		case statusLeftOut:
			s.metrics.leftOut.WithLabelValues(r.reason).Inc()
			s.limited.Log(slog.LevelWarn, "sds resource left out", "api", apiFetch, "peer", peer.String(), "name", r.name, "reason", r.reason, "detail", r.why)
			why = append(why, r.name+": "+r.why)
		default:
			why = append(why, r.name+": "+r.why)
		}
	}
	if len(resources) == 0 {
		return nil, status.Errorf(codes.NotFound, "no requested secret is available: %v", why)
	}
	s.metrics.responses.WithLabelValues(apiFetch).Inc()
	return &discoveryv3.DiscoveryResponse{
		VersionInfo: sotwVersion(rs),
		Resources:   resources,
		TypeUrl:     SecretTypeURL,
		Nonce:       "fetch",
	}, nil
}

// dedupe returns names sorted and without duplicates, so that the same set of names
// always gives the same response and version, whatever order the client wrote them in.
func dedupe(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// streamBase is what SotW and delta streams share: the peer and its grant (with retry
// while undecided), the cache watcher, and the per-name record of what was logged.
type streamBase struct {
	s    *sdsService
	ctx  context.Context
	api  string
	peer PeerCred

	grant      peerGrant
	retryDelay time.Duration
	retry      *time.Timer // armed while grant.pending

	w *Watcher
	// reported is the left-out reason last logged per name, so a name is logged once per
	// stream (and again only if its reason changes).
	reported map[string]string
}

func (s *sdsService) newStream(ctx context.Context, api string) *streamBase {
	b := &streamBase{s: s, ctx: ctx, api: api, w: s.cache.Watch(), reported: make(map[string]string)}
	b.authorize()
	s.metrics.streams.WithLabelValues(api).Inc()
	return b
}

func (b *streamBase) close() {
	b.w.Close()
	if b.retry != nil {
		b.retry.Stop()
	}
	b.s.metrics.streams.WithLabelValues(b.api).Dec()
}

// authorize (re)computes the grant; while the Authorizer cannot decide, it arms the retry
// timer with exponential backoff.
func (b *streamBase) authorize() {
	g, peer, err := b.s.authorize(b.ctx)
	b.peer, b.grant = peer, g
	if err == nil {
		b.retryDelay = 0
		return
	}
	if b.retryDelay == 0 {
		b.retryDelay = b.s.retryMin
	} else {
		b.retryDelay = min(2*b.retryDelay, b.s.retryMax)
	}
	b.s.limited.Log(slog.LevelWarn, "sds peer authorization failed; retrying", "api", b.api, "peer", peer.String(), "error", err, "retry_in", b.retryDelay)
	if b.retry == nil {
		b.retry = time.NewTimer(b.retryDelay)
	} else {
		b.retry.Reset(b.retryDelay)
	}
}

// retryC is the retry timer's channel while the grant is pending, nil otherwise.
func (b *streamBase) retryC() <-chan time.Time {
	if b.retry == nil || !b.grant.pending {
		return nil
	}
	return b.retry.C
}

// resolve resolves names and follows what they depend on. If following changed, the
// cache is read again so that no change between the read and the follow is missed.
func (b *streamBase) resolve(names []string) []resolution {
	for {
		rs, in := b.s.resolveAll(&b.grant, names)
		if !b.w.Follow(in.ids, in.bundle) {
			b.report(rs)
			return rs
		}
	}
}

// report logs left-out names, once per name and reason on this stream, and (at debug
// level) names still waiting for their secret, such as a role certificate the identity
// manager was never configured to fetch.
func (b *streamBase) report(rs []resolution) {
	for _, r := range rs {
		if r.status == statusReady {
			delete(b.reported, r.name)
			continue
		}
		if b.reported[r.name] == r.why {
			continue
		}
		b.reported[r.name] = r.why
		if r.status == statusPending {
			b.s.limited.Log(slog.LevelDebug, "sds resource not available yet; sent when it is", "api", b.api, "peer", b.peer.String(), "name", r.name, "detail", r.why)
			continue
		}
		b.s.metrics.leftOut.WithLabelValues(r.reason).Inc()
		b.s.limited.Log(slog.LevelWarn, "sds resource left out", "api", b.api, "peer", b.peer.String(), "name", r.name, "reason", r.reason, "detail", r.why)
	}
	if len(b.reported) > maxNamesPerStream {
		clear(b.reported)
	}
}

// loop runs a stream: requests from recv go to onRequest; cache changes and
// authorization retries go to onChange. It returns when the client hangs up, the stream
// fails, or the server stops.
func loop[Req any](b *streamBase, recv func() (*Req, error), onRequest func(*Req) error, onChange func() error) error {
	reqs := make(chan *Req)
	errc := make(chan error, 1)
	done := b.ctx.Done()
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-done:
				return
			}
		}
	}()
	for {
		var err error
		select {
		case <-done:
			return status.FromContextError(b.ctx.Err()).Err()
		case <-b.s.stopping:
			return status.Error(codes.Unavailable, "agent shutting down")
		case err = <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case r := <-reqs:
			err = onRequest(r)
		case <-b.w.C():
			err = onChange()
		case <-b.retryC():
			b.authorize()
			err = onChange()
		}
		if err != nil {
			return err
		}
	}
}

// nonce returns the next nonce of a stream. Nonces need only be unique within a stream.
func nextNonce(n *uint64) string {
	*n++
	return strconv.FormatUint(*n, 10)
}
