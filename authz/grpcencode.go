package authz

import (
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the messages appendCheckResponse writes, from
// envoy/service/auth/v3/external_auth.proto, envoy/config/core/v3/base.proto,
// google/rpc/status.proto and google/protobuf/struct.proto. TestWireResponseMatchesProto
// decodes what is written with the generated types, so a wrong number fails it.
const (
	respStatus          = 1 // CheckResponse.status (google.rpc.Status)
	respDenied          = 2 // CheckResponse.denied_response
	respOK              = 3 // CheckResponse.ok_response
	respMetadata        = 4 // CheckResponse.dynamic_metadata (google.protobuf.Struct)
	respError           = 5 // CheckResponse.error_response
	statusCode          = 1 // google.rpc.Status.code
	statusMessage       = 2 // google.rpc.Status.message
	deniedStatus        = 1 // DeniedHttpResponse.status (envoy.type.v3.HttpStatus)
	deniedHeaders       = 2 // DeniedHttpResponse.headers
	deniedBody          = 3 // DeniedHttpResponse.body
	httpStatusCode      = 1 // HttpStatus.code
	okHeaders           = 2 // OkHttpResponse.headers
	okHeadersToRemove   = 5 // OkHttpResponse.headers_to_remove
	okResponseHeaders   = 6 // OkHttpResponse.response_headers_to_add
	optionHeader        = 1 // HeaderValueOption.header
	optionAppendAction  = 3 // HeaderValueOption.append_action
	headerKey           = 1 // HeaderValue.key
	headerValue         = 2 // HeaderValue.value
	structFields        = 1 // Struct.fields (map<string, Value>)
	mapEntryKey         = 1 // a map entry's key
	mapEntryValue       = 2 // a map entry's value
	valueNumber         = 2 // Value.number_value
	valueString         = 3 // Value.string_value
	valueBool           = 4 // Value.bool_value
	overwriteIfExistsOr = int32(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
)

// wireResponse is a CheckResponse already encoded: the server's codec sends these bytes
// as they are. Building the wire form straight from a Result, without the generated
// message structs, saves the allocations of a dozen small messages and a reflective
// marshal per check (go-control-plane's fast marshalling code needs a build tag and a
// further module).
type wireResponse struct{ b []byte }

// appendCheckResponse appends to b the CheckResponse Envoy expects for r, the same
// message checkResponse in the tests builds with the generated types: OK with an
// OkHttpResponse (headers to set, overwriting; headers to remove; response headers for
// the client), or a non-OK status with a DeniedHttpResponse (status, headers, body) —
// as error_response for "could not decide" when errorResponse is set — and the dynamic
// metadata either way.
func appendCheckResponse(b []byte, r *Result, errorResponse bool) []byte {
	if r.Allowed {
		b = appendMessage(b, respStatus, func(b []byte) []byte { return b })
		b = appendMessage(b, respOK, func(b []byte) []byte {
			b = appendHeaderOptions(b, okHeaders, r.UpstreamHeaders)
			for _, h := range r.RemoveHeaders {
				b = appendString(b, okHeadersToRemove, h)
			}
			return appendHeaderOptions(b, okResponseHeaders, r.ClientHeaders)
		})
		return appendMetadata(b, r)
	}
	code := codes.PermissionDenied
	switch r.Outcome {
	case OutcomeUnauthenticated:
		code = codes.Unauthenticated
	case OutcomeError:
		code = codes.Unavailable
	}
	b = appendMessage(b, respStatus, func(b []byte) []byte {
		b = appendVarint(b, statusCode, uint64(code))
		return appendString(b, statusMessage, r.Reason)
	})
	field := protowire.Number(respDenied)
	if r.Outcome == OutcomeError && errorResponse {
		field = respError
	}
	b = appendMessage(b, field, func(b []byte) []byte {
		b = appendMessage(b, deniedStatus, func(b []byte) []byte {
			return appendVarint(b, httpStatusCode, uint64(int64(r.Status)))
		})
		b = appendHeaderOptions(b, deniedHeaders, r.ClientHeaders)
		return appendString(b, deniedBody, r.Body)
	})
	return appendMetadata(b, r)
}

// appendMetadata writes the dynamic metadata Envoy emits under the ext_authz filter's
// namespace (envoy.filters.http.ext_authz), for access logs and later filters:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.
func appendMetadata(b []byte, r *Result) []byte {
	return appendMessage(b, respMetadata, func(b []byte) []byte {
		b = appendStringEntry(b, "decision_id", r.DecisionID)
		b = appendStringEntry(b, "decision", r.Outcome.String())
		b = appendStringEntry(b, "reason", r.Reason)
		b = appendStringEntry(b, "principal", r.Caller.Principal)
		b = appendStringEntry(b, "credential", r.Caller.Source)
		b = appendStringEntry(b, "domain", r.Domain)
		if r.Match != nil {
			b = appendStringEntry(b, "policy", r.Match.Policy)
			b = appendEntry(b, "assertion_id", func(b []byte) []byte {
				b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
				return protowire.AppendFixed64(b, math.Float64bits(float64(r.Match.ID)))
			})
		}
		if r.DryRun {
			b = appendEntry(b, "dry_run", func(b []byte) []byte { return appendVarint(b, valueBool, 1) })
		}
		return b
	})
}

// appendStringEntry writes a Struct entry with a string value, or nothing for "".
func appendStringEntry(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	return appendEntry(b, key, func(b []byte) []byte { return appendString(b, valueString, value) })
}

// appendEntry writes one Struct.fields map entry whose Value is written by value.
func appendEntry(b []byte, key string, value func([]byte) []byte) []byte {
	return appendMessage(b, structFields, func(b []byte) []byte {
		b = appendString(b, mapEntryKey, key)
		return appendMessage(b, mapEntryValue, value)
	})
}

// appendHeaderOptions writes each header as a HeaderValueOption that overwrites.
func appendHeaderOptions(b []byte, field protowire.Number, hs []Header) []byte {
	for _, h := range hs {
		b = appendMessage(b, field, func(b []byte) []byte {
			b = appendMessage(b, optionHeader, func(b []byte) []byte {
				b = appendString(b, headerKey, h.Name)
				return appendString(b, headerValue, h.Value)
			})
			return appendVarint(b, optionAppendAction, uint64(overwriteIfExistsOr))
		})
	}
	return b
}

// appendString writes a proto3 string field, omitted when empty as proto3 does.
func appendString(b []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarint writes a proto3 integer field, omitted when zero.
func appendVarint(b []byte, field protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage writes a length-delimited field whose contents body appends. The
// length is not known in advance: one byte is reserved, which fits the usual small
// messages, and the contents are moved along when the length needs more.
func appendMessage(b []byte, field protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		b[at] = byte(n)
		return b
	}
	b = append(b, make([]byte, size-1)...)
	copy(b[at+size:], b[at+1:at+1+n])
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}
