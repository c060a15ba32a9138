package authz

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// vtMarshaler is the fast marshalling code go-control-plane generates (vtprotobuf) for its
// messages, CheckResponse among them.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// vtCodec is gRPC's proto codec, except that messages with vtprotobuf code are marshalled
// with it instead of by reflection: a CheckResponse with headers and dynamic metadata
// is encoded several times faster. Unmarshalling is unchanged (there is no generated
// unmarshal code). The server installs it with grpc.ForceServerCodecV2, so nothing is
// registered globally.
type vtCodec struct{ fallback encoding.CodecV2 }

func newVTCodec() vtCodec { return vtCodec{fallback: encoding.GetCodecV2(grpcproto.Name)} }

func (c vtCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMarshaler)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVTStrict(buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c vtCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.fallback.Unmarshal(data, v) }

func (vtCodec) Name() string { return grpcproto.Name }
