package sdstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// SecretTypeURL is the type URL Envoy sends for SDS.
const SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// Dial connects to a gRPC server on a Unix socket, as Envoy's SDS cluster does (no TLS).
func Dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///unix",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}))
}

// DecodeSecret unpacks an SDS resource.
func DecodeSecret(a *anypb.Any) (*tlsv3.Secret, error) {
	s := &tlsv3.Secret{}
	if err := a.UnmarshalTo(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Client is a state-of-the-world SDS client that behaves as Envoy's gRPC mux does: one
// stream, the full list of names in every request, ACK with the response's version and
// nonce, NACK with the last accepted version, the response's nonce and an error_detail.
// It is used by one goroutine at a time.
type Client struct {
	stream   grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	names    []string
	accepted string // last accepted version_info
	nonce    string // nonce of the last response received
}

// NewClient opens a StreamSecrets stream on conn. Nothing is sent until Subscribe.
func NewClient(ctx context.Context, conn *grpc.ClientConn) (*Client, error) {
	st, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		return nil, err
	}
	return &Client{stream: st}, nil
}

// Subscribe sets the names the client wants and sends a request for them.
func (c *Client) Subscribe(names ...string) error {
	c.names = names
	return c.send(c.accepted, nil)
}

// Recv waits for the next response and records its nonce (an answer must quote it).
func (c *Client) Recv() (*discoveryv3.DiscoveryResponse, error) {
	r, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	c.nonce = r.GetNonce()
	return r, nil
}

// Ack accepts a response.
func (c *Client) Ack(r *discoveryv3.DiscoveryResponse) error {
	c.accepted = r.GetVersionInfo()
	return c.send(c.accepted, nil)
}

// Nack rejects a response with msg, keeping the last accepted version.
func (c *Client) Nack(r *discoveryv3.DiscoveryResponse, msg string) error {
	return c.send(c.accepted, &status.Status{Code: int32(codes.InvalidArgument), Message: msg})
}

// SendRaw sends a request as given, for tests of malformed or stale requests.
func (c *Client) SendRaw(req *discoveryv3.DiscoveryRequest) error { return c.stream.Send(req) }

// Accepted returns the last accepted version_info.
func (c *Client) Accepted() string { return c.accepted }

// Close ends the client's side of the stream.
func (c *Client) Close() error { return c.stream.CloseSend() }

func (c *Client) send(version string, detail *status.Status) error {
	return c.stream.Send(&discoveryv3.DiscoveryRequest{
		VersionInfo:   version,
		ResourceNames: c.names,
		TypeUrl:       SecretTypeURL,
		ResponseNonce: c.nonce,
		ErrorDetail:   detail,
	})
}

// DeltaClient is an incremental SDS client that behaves as Envoy's delta mux does: it
// remembers the version of each resource it accepted, sends them as
// initial_resource_versions when it (re)connects, subscribes and unsubscribes by
// difference, and ACKs or NACKs each response by nonce. It is used by one goroutine at a
// time.
type DeltaClient struct {
	stream   grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	versions map[string]string
	started  bool
	pending  []string // subscribed before the first request
}

// NewDeltaClient opens a DeltaSecrets stream. versions are the resources the client
// already has (from an earlier stream), sent with the first request.
func NewDeltaClient(ctx context.Context, conn *grpc.ClientConn, versions map[string]string) (*DeltaClient, error) {
	st, err := secretv3.NewSecretDiscoveryServiceClient(conn).DeltaSecrets(ctx)
	if err != nil {
		return nil, err
	}
	v := maps.Clone(versions)
	if v == nil {
		v = make(map[string]string)
	}
	return &DeltaClient{stream: st, versions: v}, nil
}

// Subscribe adds names to the subscription.
func (c *DeltaClient) Subscribe(names ...string) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNamesSubscribe: names}
	if !c.started {
		c.started = true
		req.InitialResourceVersions = maps.Clone(c.versions)
	}
	return c.stream.Send(req)
}

// Unsubscribe removes names from the subscription and forgets their versions.
func (c *DeltaClient) Unsubscribe(names ...string) error {
	if !c.started {
		return errors.New("unsubscribe before subscribe")
	}
	for _, n := range names {
		delete(c.versions, n)
	}
	return c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNamesUnsubscribe: names})
}

// Recv waits for the next response.
func (c *DeltaClient) Recv() (*discoveryv3.DeltaDiscoveryResponse, error) { return c.stream.Recv() }

// Ack accepts a response: its resources' versions are recorded, its removals forgotten.
func (c *DeltaClient) Ack(r *discoveryv3.DeltaDiscoveryResponse) error {
	for _, res := range r.GetResources() {
		c.versions[res.GetName()] = res.GetVersion()
	}
	for _, n := range r.GetRemovedResources() {
		delete(c.versions, n)
	}
	return c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResponseNonce: r.GetNonce()})
}

// Nack rejects a response with msg; the versions stay as they were.
func (c *DeltaClient) Nack(r *discoveryv3.DeltaDiscoveryResponse, msg string) error {
	return c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:       SecretTypeURL,
		ResponseNonce: r.GetNonce(),
		ErrorDetail:   &status.Status{Code: int32(codes.InvalidArgument), Message: msg},
	})
}

// Versions returns a copy of the accepted resource versions, to reconnect with.
func (c *DeltaClient) Versions() map[string]string { return maps.Clone(c.versions) }

// Close ends the client's side of the stream.
func (c *DeltaClient) Close() error { return c.stream.CloseSend() }

// Fetch calls FetchSecrets once.
func Fetch(ctx context.Context, conn *grpc.ClientConn, names ...string) (*discoveryv3.DiscoveryResponse, error) {
	r, err := secretv3.NewSecretDiscoveryServiceClient(conn).FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{
		TypeUrl: SecretTypeURL, ResourceNames: names,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %v: %w", names, err)
	}
	return r, nil
}
