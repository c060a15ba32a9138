package sds

import (
	"log/slog"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// sotwStream is one StreamSecrets stream (state of the world).
//
// Protocol, per the xDS spec:
//   - every response carries version_info (a hash of its names and resource versions)
//     and a fresh nonce;
//   - a request whose response_nonce is not the last nonce sent is stale and ignored
//     (a newer response is in flight; the client will answer it);
//   - a request with the last nonce and no error_detail ACKs that version; one with
//     error_detail NACKs it: the error is logged and nothing is resent, so the client
//     keeps its last accepted version until the content changes again;
//   - a response is sent only when it carries at least one secret and its version differs
//     from the last one sent (whether that was ACKed, pending or NACKed), so a NACK never
//     loops and a stream never gets an empty first response;
//   - a rotation wakes only streams following the changed entry.
type sotwStream struct {
	*streamBase
	stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]

	names        []string
	started      bool
	nonce        uint64
	lastNonce    string
	lastVersion  string
	ackedVersion string
}

// StreamSecrets serves a state-of-the-world SDS stream.
func (s *sdsService) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	st := &sotwStream{streamBase: s.newStream(stream.Context(), apiSotW), stream: stream}
	defer st.close()
	return loop(st.streamBase, stream.Recv, st.onRequest, st.push)
}

func (st *sotwStream) onRequest(req *discoveryv3.DiscoveryRequest) error {
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	if st.started && req.GetResponseNonce() != "" && req.GetResponseNonce() != st.lastNonce {
		st.s.log.Debug("sds stale nonce ignored", "api", st.api, "peer", st.peer.String(), "nonce", req.GetResponseNonce(), "last_nonce", st.lastNonce)
		return nil
	}
	if req.GetResponseNonce() != "" && req.GetResponseNonce() == st.lastNonce {
		if d := req.GetErrorDetail(); d != nil {
			st.s.metrics.nacks.WithLabelValues(st.api).Inc()
			st.s.limited.Log(slog.LevelWarn, "sds response rejected by client (NACK); keeping its last accepted version",
				"api", st.api, "peer", st.peer.String(), "rejected_version", st.lastVersion, "accepted_version", st.ackedVersion,
				"names", st.names, "error_code", d.GetCode(), "error", d.GetMessage())
		} else {
			st.ackedVersion = st.lastVersion
		}
	}
	names := dedupe(req.GetResourceNames())
	if len(names) > maxNamesPerStream {
		return status.Errorf(codes.InvalidArgument, "%d resource names, at most %d", len(names), maxNamesPerStream)
	}
	st.names, st.started = names, true
	return st.push()
}

// push sends the current state of the subscribed names if it differs from what was last
// sent.
func (st *sotwStream) push() error {
	if !st.started {
		return nil
	}
	rs := st.resolve(st.names)
	resources := make([]*anypb.Any, 0, len(rs))
	for _, r := range rs {
		if r.status == statusReady {
			resources = append(resources, r.secret)
		}
	}
	if len(resources) == 0 {
		return nil
	}
	version := sotwVersion(rs)
	if version == st.lastVersion {
		return nil
	}
	nonce := nextNonce(&st.nonce)
	if err := st.stream.Send(&discoveryv3.DiscoveryResponse{
		VersionInfo: version,
		Resources:   resources,
		TypeUrl:     SecretTypeURL,
		Nonce:       nonce,
	}); err != nil {
		return err
	}
	st.lastNonce, st.lastVersion = nonce, version
	st.s.metrics.responses.WithLabelValues(st.api).Inc()
	return nil
}
