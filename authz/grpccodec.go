package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// wireCodec is gRPC's proto codec, except for the Check call's own types: a wireRequest
// is decoded by decodeCheckRequest and a wireResponse is sent as it is. Everything else
// (health checks) goes to the proto codec. The server installs it with
// grpc.ForceServerCodecV2, so nothing is registered globally.
type wireCodec struct{ fallback encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{fallback: encoding.GetCodecV2(grpcproto.Name)} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*wireResponse); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return c.fallback.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*wireRequest)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return decodeCheckRequest(data[0].ReadOnlyData(), &r.in)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeCheckRequest(buf.ReadOnlyData(), &r.in)
}

func (wireCodec) Name() string { return grpcproto.Name }

// checkServer is what authorizationDesc's handler calls.
type checkServer interface {
	checkWire(ctx context.Context, req *wireRequest) (*wireResponse, error)
}

// authorizationDesc describes envoy.service.auth.v3.Authorization as the generated
// Authorization_ServiceDesc does (same service, method and proto file), but its
// handler decodes into a wireRequest and returns a wireResponse, so that wireCodec can
// skip the generated messages on both sides. Clients see the same service.
var authorizationDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*checkServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler:    handleCheck,
	}},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}

func handleCheck(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := &wireRequest{}
	if err := dec(req); err != nil {
		return nil, err
	}
	s := srv.(checkServer)
	if interceptor == nil {
		return s.checkWire(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*wireRequest))
	})
}
