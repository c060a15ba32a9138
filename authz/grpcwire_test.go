package authz

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// TestWireResponseMatchesProto checks that the server's hand-written CheckResponse
// encoding decodes, with go-control-plane's generated types, to exactly the message the
// reference builds from the same Result.
func TestWireResponseMatchesProto(t *testing.T) {
	long := strings.Repeat("v", 300) // nested lengths past one varint byte
	match := &policy.CompiledAssertion{ID: 3, Policy: "read"}
	tests := []struct {
		name          string
		r             Result
		errorResponse bool
	}{
		{"allow with headers and metadata", Result{Outcome: OutcomeAllow, Allowed: true, Status: 200, Reason: "allowed", DecisionID: "x-1",
			UpstreamHeaders: []Header{{"x-athenz-principal", "sports.api"}, {"x-athenz-roles", "readers,writers"}},
			RemoveHeaders:   []string{"authorization", "athenz-role-auth"}, ClientHeaders: []Header{{HeaderExplanation, `{"a":1}`}},
			Caller: Caller{Principal: "sports.api", Source: SourceMTLS}, Domain: "sports", Match: match}, false},
		{"allow bare", Result{Outcome: OutcomeAllow, Allowed: true, Status: 200}, false},
		{"allow with long values", Result{Outcome: OutcomeAllow, Allowed: true, Status: 200, DecisionID: long,
			UpstreamHeaders: []Header{{"x-long", long}, {"x-empty", ""}}, Caller: Caller{Principal: long}}, false},
		{"assertion id zero", Result{Outcome: OutcomeAllow, Allowed: true, Status: 200, Match: &policy.CompiledAssertion{}}, false},
		{"dry run", Result{Outcome: OutcomeDeny, Allowed: true, DryRun: true, Status: 200, Reason: "no_match",
			UpstreamHeaders: []Header{{HeaderDryRun, "deny"}}}, false},
		{"deny", Result{Outcome: OutcomeDeny, Status: 403, Reason: "no_match", Body: `{"allowed":false}`,
			ClientHeaders: []Header{{HeaderDecision, "deny"}, {"content-type", "application/json"}}, Match: match}, false},
		{"unauthenticated", Result{Outcome: OutcomeUnauthenticated, Status: 401, Reason: "token_expired",
			ClientHeaders: []Header{{"www-authenticate", `Bearer error="invalid_token"`}}}, false},
		{"error as denied", Result{Outcome: OutcomeError, Status: 503, Reason: "no_bundle", Body: long}, false},
		{"error as error_response", Result{Outcome: OutcomeError, Status: 503, Reason: "no_bundle"}, true},
		{"error response flag ignored for deny", Result{Outcome: OutcomeDeny, Status: 403, Reason: "denied"}, true},
		{"fail open", Result{Outcome: OutcomeError, Allowed: true, Status: 200, Reason: "internal_error",
			UpstreamHeaders: []Header{{HeaderDecision, "error"}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := checkResponse(&tc.r, tc.errorResponse)
			data, err := newWireCodec().Marshal(&wireResponse{b: appendCheckResponse(nil, &tc.r, tc.errorResponse)})
			if err != nil {
				t.Fatal(err)
			}
			got := &authv3.CheckResponse{}
			if err := proto.Unmarshal(data.Materialize(), got); err != nil {
				t.Fatalf("our encoding does not decode: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("our encoding decodes to\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestWireRequestMatchesProto checks the server's CheckRequest decoder against the
// generated types' decoding for requests as Envoy sends them and for wire forms Envoy
// does not send but a client could (merged messages, repeated scalars and map keys,
// fields of the wrong wire type, header_map).
func TestWireRequestMatchesProto(t *testing.T) {
	api := peer{principal: "spiffe://sports/sa/api", certURL: "-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A"}
	envoy := envoyReq{path: "/public/scores?x=1", peer: &api, headers: map[string]string{"authorization": "Bearer abc"},
		ext: map[string]string{"athenz.domain": "sports"}}.build()
	mustMarshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	headerMap := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/pkg.Svc/Do", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "Content-Type", Value: "application/grpc"}, {Key: "X-A", Value: "1"}, {Key: "x-a", RawValue: []byte("2")},
		}}}}}}
	upper := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"Authorization": "Bearer x", "Host": "h"}}}}}
	// Two copies of attributes merge; the second's path wins, its headers add to the first's.
	second := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Path: "/other", Headers: map[string]string{"x-second": "2", "user-agent": "later"}}},
		ContextExtensions: map[string]string{"athenz.action": "write"}}}
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, reqAttributes, protowire.VarintType), 7)
	tests := []struct {
		name string
		wire []byte
	}{
		{"as envoy sends it", mustMarshal(envoy)},
		{"empty", nil},
		{"no http request", mustMarshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Principal: "p"}}})},
		{"header map", mustMarshal(headerMap)},
		{"upper-case header names", mustMarshal(upper)},
		{"merged attributes", append(mustMarshal(envoy), mustMarshal(second)...)},
		{"attributes of the wrong wire type", append(wrongType, mustMarshal(envoy)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			compareDecoders(t, tc.wire)
		})
	}
}

// TestWireRequestRejects checks that malformed wire data is refused, as proto.Unmarshal
// refuses it.
func TestWireRequestRejects(t *testing.T) {
	badUTF8 := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Path: "/ok"}}}}
	wire, err := proto.Marshal(badUTF8)
	if err != nil {
		t.Fatal(err)
	}
	wire[len(wire)-1] = 0xff // the last byte of the path
	tests := []struct {
		name string
		wire []byte
	}{
		{"truncated", []byte{0x0a, 0x05, 0x22}},
		{"field number zero", []byte{0x02, 0x00}},
		{"invalid utf-8 in a read string", wire},
		{"length past the end", []byte{0x0a, 0x7f}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := proto.Unmarshal(tc.wire, &authv3.CheckRequest{}); err == nil {
				t.Fatal("proto.Unmarshal accepts this input; the case tests nothing")
			}
			if err := decodeCheckRequest(tc.wire, &Input{}); err == nil {
				t.Error("decodeCheckRequest accepted malformed input")
			}
		})
	}
}

// compareDecoders decodes wire with decodeCheckRequest and with proto.Unmarshal +
// inputFromCheckRequest. Where proto accepts the input, both must give the same Input;
// where ours refuses it, proto must too. (Ours may accept what proto refuses: it does
// not check the UTF-8 of string fields it skips.)
func compareDecoders(t *testing.T, wire []byte) {
	t.Helper()
	var got Input
	ourErr := decodeCheckRequest(wire, &got)
	req := &authv3.CheckRequest{}
	protoErr := proto.Unmarshal(wire, req)
	switch {
	case protoErr != nil && ourErr == nil:
		return
	case protoErr == nil && ourErr != nil:
		t.Fatalf("decodeCheckRequest refused what proto accepts: %v", ourErr)
	case protoErr != nil:
		return
	}
	want := inputFromCheckRequest(req)
	if !sameInput(&got, want) {
		t.Fatalf("decodeCheckRequest = %+v\nproto gives %+v", got, *want)
	}
}

// sameInput compares inputs, treating nil and empty maps alike. Header names that
// differ only in case are joined in map order, so such inputs compare their key sets.
func sameInput(a, b *Input) bool {
	if a.Method != b.Method || a.Path != b.Path || a.Host != b.Host || a.SourcePrincipal != b.SourcePrincipal ||
		a.SourceCertificate != b.SourceCertificate || a.GRPCService != b.GRPCService || a.GRPCMethod != b.GRPCMethod {
		return false
	}
	if !maps.Equal(a.ContextExtensions, b.ContextExtensions) {
		return false
	}
	if maps.Equal(a.Headers, b.Headers) {
		return true
	}
	if len(a.Headers) != len(b.Headers) {
		return false
	}
	for k := range a.Headers {
		if _, ok := b.Headers[k]; !ok {
			return false
		}
	}
	return true
}

// FuzzDecodeCheckRequest compares the server's CheckRequest decoder with the generated
// types' decoding on arbitrary bytes.
func FuzzDecodeCheckRequest(f *testing.F) {
	api := peer{principal: "spiffe://sports/sa/api", certURL: "pem"}
	for _, r := range []*authv3.CheckRequest{
		envoyReq{path: "/a", peer: &api, ext: map[string]string{"athenz.domain": "sports"}}.build(),
		envoyReq{path: "/pkg.S/M", headers: map[string]string{"content-type": "application/grpc"}}.build(),
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "A", Value: "1"}, {Key: "a", RawValue: []byte("2")}}}}}}},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		compareDecoders(t, wire)
		// Split across buffers, as gRPC may hand it over.
		var in wireRequest
		half := len(wire) / 2
		err := newWireCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:half]), mem.SliceBuffer(wire[half:])}, &in)
		if wantErr := decodeCheckRequest(wire, &Input{}); (err == nil) != (wantErr == nil) {
			t.Fatalf("split buffers: %v, whole: %v", err, wantErr)
		}
	})
}

// callerFunc is a CallerSource from a function, for the retention test.
type callerFunc func(*Input) (Caller, error)

func (f callerFunc) Authenticate(_ context.Context, in *Input) (Caller, error) { return f(in) }

// TestPeerCacheKeepsNoRequest defends against memory exhaustion: the decoder's strings
// share one copy of the whole request (up to the gRPC message limit), so a cache that
// kept them as they are would keep every request whose peer it remembers. The cache must
// hold copies only.
func TestPeerCacheKeepsNoRequest(t *testing.T) {
	req := envoyReq{path: "/x", peer: &peer{principal: "spiffe://sports/sa/api", certURL: "pem-" + strings.Repeat("x", 4096)}}.build()
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		next callerFunc
	}{
		{"caller", func(in *Input) (Caller, error) {
			return Caller{Principal: in.SourcePrincipal[len("spiffe://"):], Roles: []string{in.Path}, Source: SourceMTLS}, nil
		}},
		{"credential error", func(in *Input) (Caller, error) {
			return Caller{}, &CredentialError{Reason: in.Path, Err: errors.New(in.SourceCertificate[:10])}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Input
			if err := decodeCheckRequest(wire, &in); err != nil {
				t.Fatal(err)
			}
			// The request's strings live in one block; find its bounds from the certificate.
			lo := uintptr(unsafe.Pointer(unsafe.StringData(in.SourceCertificate))) - uintptr(len(wire))
			hi := lo + 2*uintptr(len(wire))
			inside := func(what, s string) {
				if s == "" {
					return
				}
				p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
				if p >= lo && p < hi {
					t.Errorf("the cache keeps %s inside the request's memory", what)
				}
			}
			if p := uintptr(unsafe.Pointer(unsafe.StringData(in.Path))); p < lo || p >= hi {
				t.Fatal("the decoder no longer shares one block; the test measures nothing")
			}
			pc := newPeerCachingCallers(tc.next).(*peerCachingCallers)
			_, _ = pc.Authenticate(context.Background(), &in)
			for _, k := range pc.cache.Keys() {
				inside("the key", k.principal)
				inside("the key", k.certificate)
				a, _ := pc.cache.Peek(k)
				inside("the principal", a.caller.Principal)
				for _, r := range a.caller.Roles {
					inside("a role", r)
				}
				if a.err != nil {
					inside("the reason", a.err.Reason)
					inside("the cause", a.err.Err.Error())
				}
			}
			if pc.cache.Len() != 1 {
				t.Fatalf("cache holds %d entries, want 1", pc.cache.Len())
			}
		})
	}
}
