package sds

import (
	"log/slog"
	"sort"
	"strconv"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// deltaStream is one DeltaSecrets stream (incremental xDS).
//
// Protocol, per the xDS spec:
//   - the stream tracks, per name, the version the client has: what the client declared
//     in initial_resource_versions when it (re)connected, then what this stream sent;
//   - resource_names_subscribe and resource_names_unsubscribe change the subscription
//     (names in initial_resource_versions are subscribed too); after each request and
//     each cache change the stream sends only the resources whose version differs from
//     the client's, so a reconnecting client that is up to date gets nothing;
//   - removed_resources names what the client has and can no longer have: a name that
//     became unknown or not entitled, or an identity this stream had sent that left the
//     cache. A name the client only declared on reconnect is not removed merely because
//     the agent has not loaded it yet (the agent may have just restarted);
//   - ACK and NACK name a nonce; a NACK is logged and the rejected version stays recorded
//     as the client's, so it is not resent in a loop; the next change sends a new one;
//   - wildcard subscriptions are not part of SDS and are ignored.
type deltaStream struct {
	*streamBase
	stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]

	started    bool
	subscribed map[string]struct{}
	client     map[string]clientVersion
	nonce      uint64
	// sentNames are the names in the response with nonce lastNonce, for NACK logs.
	lastNonce string
	sentNames []string
}

// clientVersion is the version of a resource the client has.
type clientVersion struct {
	version string
	sent    bool // this stream sent it (versus declared by the client on reconnect)
}

// DeltaSecrets serves an incremental SDS stream.
func (s *sdsService) DeltaSecrets(stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	st := &deltaStream{
		streamBase: s.newStream(stream.Context(), apiDelta),
		stream:     stream,
		subscribed: make(map[string]struct{}),
		client:     make(map[string]clientVersion),
	}
	defer st.close()
	return loop(st.streamBase, stream.Recv, st.onRequest, st.push)
}

func (st *deltaStream) onRequest(req *discoveryv3.DeltaDiscoveryRequest) error {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	if !st.started {
		st.started = true
		for n, v := range req.GetInitialResourceVersions() {
			st.client[n] = clientVersion{version: v}
			st.subscribed[n] = struct{}{}
		}
	}
	if nonce := req.GetResponseNonce(); nonce != "" {
		if d := req.GetErrorDetail(); d != nil {
			var names []string
			if nonce == st.lastNonce {
				names = st.sentNames
			}
			st.s.metrics.nacks.WithLabelValues(st.api).Inc()
			st.s.limited.Log(slog.LevelWarn, "sds response rejected by client (NACK); keeping its last accepted version",
				"api", st.api, "peer", st.peer.String(), "nonce", nonce, "names", names, "error_code", d.GetCode(), "error", d.GetMessage())
		}
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			st.s.limited.Log(slog.LevelWarn, "sds wildcard subscription ignored", "api", st.api, "peer", st.peer.String())
			continue
		}
		st.subscribed[n] = struct{}{}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		delete(st.subscribed, n)
		delete(st.client, n)
		delete(st.reported, n)
	}
	if len(st.subscribed) > maxNamesPerStream {
		return status.Errorf(codes.InvalidArgument, "%d resource names, at most %d", len(st.subscribed), maxNamesPerStream)
	}
	return st.push()
}

// push sends what changed for the subscribed names since the client last heard.
func (st *deltaStream) push() error {
	if !st.started {
		return nil
	}
	names := make([]string, 0, len(st.subscribed))
	for n := range st.subscribed {
		names = append(names, n)
	}
	sort.Strings(names)
	rs := st.resolve(names)
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: SecretTypeURL}
	for _, r := range rs {
		have, has := st.client[r.name]
		switch r.status {
		case statusReady:
			if has && have.version == r.version {
				continue
			}
			resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: r.name, Version: r.version, Resource: r.secret})
			st.client[r.name] = clientVersion{version: r.version, sent: true}
		case statusPending:
			if has && have.sent {
				resp.RemovedResources = append(resp.RemovedResources, r.name)
				delete(st.client, r.name)
			}
		case statusLeftOut:
			if has {
				resp.RemovedResources = append(resp.RemovedResources, r.name)
				delete(st.client, r.name)
			}
		}
	}
	if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 {
		return nil
	}
	resp.Nonce = nextNonce(&st.nonce)
	resp.SystemVersionInfo = strconv.FormatUint(st.s.cache.Version(), 10)
	if err := st.stream.Send(resp); err != nil {
		return err
	}
	st.lastNonce = resp.Nonce
	st.sentNames = st.sentNames[:0]
	for _, r := range resp.Resources {
		st.sentNames = append(st.sentNames, r.Name)
	}
	st.s.metrics.responses.WithLabelValues(st.api).Inc()
	return nil
}
