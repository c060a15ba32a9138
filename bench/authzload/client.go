package main

import (
	"context"
	"errors"
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The load generator shares two cores with the server it measures. With the generated
// client, each answer costs the generator a reflective decode that grows with the answer
// (athenz-mesh's carries headers and dynamic metadata, the no-op's nothing), so the richer
// server would be measured partly by the generator's work. Envoy decodes answers in C++
// at a fraction of that cost. The generator therefore sends requests encoded once and
// reads only the answer's status code, the same work for both servers.

// encodedRequest is a CheckRequest already in wire form.
type encodedRequest []byte

// answer is what the generator reads of a CheckResponse: whether status is present, and
// its code.
type answer struct {
	hasStatus bool
	code      uint64
}

// rawCodec sends encodedRequest as it is and reads an answer.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(encodedRequest)
	if !ok {
		return nil, fmt.Errorf("rawCodec cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(r)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	a, ok := v.(*answer)
	if !ok {
		return fmt.Errorf("rawCodec cannot read into %T", v)
	}
	buf := data.Materialize()
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return errors.New("bad CheckResponse")
		}
		buf = buf[n:]
		if num == 1 && typ == protowire.BytesType { // CheckResponse.status
			status, m := protowire.ConsumeBytes(buf)
			if m < 0 {
				return errors.New("bad CheckResponse status")
			}
			a.hasStatus = true
			if len(status) > 0 && status[0] == 0x08 { // google.rpc.Status.code
				a.code, _ = protowire.ConsumeVarint(status[1:])
			}
			buf = buf[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, buf)
		if m < 0 {
			return errors.New("bad CheckResponse field")
		}
		buf = buf[m:]
	}
	return nil
}

// encodeRequests encodes each request once.
func encodeRequests(reqs []*authv3.CheckRequest) ([]encodedRequest, error) {
	out := make([]encodedRequest, len(reqs))
	for i, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// check sends one encoded request on conn and reads the answer's status.
func check(ctx context.Context, conn *grpc.ClientConn, req encodedRequest) (answer, error) {
	var a answer
	err := conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, req, &a, grpc.ForceCodecV2(rawCodec{}))
	return a, err
}
