package authz

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of what decodeCheckRequest reads, from
// envoy/service/auth/v3/attribute_context.proto and envoy/config/core/v3/base.proto.
// FuzzDecodeCheckRequest compares the result with the generated types' decoding.
const (
	reqAttributes     = 1  // CheckRequest.attributes
	attrSource        = 1  // AttributeContext.source (Peer)
	attrRequest       = 4  // AttributeContext.request
	attrContextExt    = 10 // AttributeContext.context_extensions (map<string, string>)
	peerPrincipal     = 4  // Peer.principal
	peerCertificate   = 5  // Peer.certificate
	requestHTTP       = 2  // Request.http (HttpRequest)
	httpMethod        = 2  // HttpRequest.method
	httpHeaders       = 3  // HttpRequest.headers (map<string, string>)
	httpPath          = 4  // HttpRequest.path
	httpHost          = 5  // HttpRequest.host
	httpHeaderMap     = 13 // HttpRequest.header_map (HeaderMap)
	headerMapHeaders  = 1  // HeaderMap.headers (repeated HeaderValue)
	headerValueRawVal = 3  // HeaderValue.raw_value (bytes)
)

// wireRequest receives a CheckRequest from the server's codec: decodeCheckRequest reads
// the fields the pipeline uses straight into in, and skips the rest (body, TLS session,
// metadata, addresses) without allocating for them.
type wireRequest struct{ in Input }

var errBadWire = errors.New("authz: malformed CheckRequest")

// rawHeader is one entry of header_map before it is folded into Headers.
type rawHeader struct{ key, value string }

// reqDecoder reads fields out of one serialized request. Every string it returns is a
// substring of s, a copy of the whole request made once: a request costs one string
// allocation, not one per header. Whatever keeps such a string beyond the request
// (peerCachingCallers) clones it, or the whole request would stay alive with it.
type reqDecoder struct {
	b  []byte
	s  string
	in *Input
	hm []rawHeader
}

// decodeCheckRequest reads a serialized CheckRequest into in, with the semantics of
// proto.Unmarshal for the fields it reads (a repeated message merges, the last scalar
// wins, the last map entry for a key wins, a field of an unexpected wire type is an
// unknown field, strings must be UTF-8) and then the same normalisation as the reading
// over the generated types. Fields it does not read are only checked to be well-formed.
func decodeCheckRequest(b []byte, in *Input) error {
	d := reqDecoder{b: b, s: string(b), in: in}
	err := d.fields(0, len(b), func(num protowire.Number, typ protowire.Type, vs, ve int) error {
		if num == reqAttributes && typ == protowire.BytesType {
			return d.attributes(vs, ve)
		}
		return nil
	})
	if err != nil {
		return err
	}
	normalizeInput(in, d.hm)
	return nil
}

func (d *reqDecoder) attributes(start, end int) error {
	in := d.in
	return d.fields(start, end, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case attrSource:
			return d.fields(vs, ve, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
				if typ != protowire.BytesType {
					return nil
				}
				switch num {
				case peerPrincipal:
					return d.str(&in.SourcePrincipal, vs, ve)
				case peerCertificate:
					return d.str(&in.SourceCertificate, vs, ve)
				}
				return nil
			})
		case attrRequest:
			return d.fields(vs, ve, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
				if num == requestHTTP && typ == protowire.BytesType {
					return d.http(vs, ve)
				}
				return nil
			})
		case attrContextExt:
			if in.ContextExtensions == nil {
				in.ContextExtensions = make(map[string]string, 4)
			}
			return d.mapEntry(vs, ve, in.ContextExtensions)
		}
		return nil
	})
}

func (d *reqDecoder) http(start, end int) error {
	in := d.in
	return d.fields(start, end, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case httpMethod:
			return d.str(&in.Method, vs, ve)
		case httpPath:
			return d.str(&in.Path, vs, ve)
		case httpHost:
			return d.str(&in.Host, vs, ve)
		case httpHeaders:
			if in.Headers == nil {
				in.Headers = make(map[string]string, 16)
			}
			return d.mapEntry(vs, ve, in.Headers)
		case httpHeaderMap:
			return d.fields(vs, ve, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
				if num == headerMapHeaders && typ == protowire.BytesType {
					return d.headerValue(vs, ve)
				}
				return nil
			})
		}
		return nil
	})
}

// headerValue reads one HeaderValue of header_map.
func (d *reqDecoder) headerValue(start, end int) error {
	var h rawHeader
	var raw string
	err := d.fields(start, end, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case mapEntryKey: // HeaderValue.key
			return d.str(&h.key, vs, ve)
		case mapEntryValue: // HeaderValue.value
			return d.str(&h.value, vs, ve)
		case headerValueRawVal: // bytes: no UTF-8 rule
			raw = d.s[vs:ve]
		}
		return nil
	})
	if err != nil {
		return err
	}
	if h.value == "" {
		h.value = raw
	}
	d.hm = append(d.hm, h)
	return nil
}

// mapEntry reads one map<string, string> entry into m.
func (d *reqDecoder) mapEntry(start, end int, m map[string]string) error {
	var k, v string
	err := d.fields(start, end, func(num protowire.Number, typ protowire.Type, vs, ve int) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case mapEntryKey:
			return d.str(&k, vs, ve)
		case mapEntryValue:
			return d.str(&v, vs, ve)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m[k] = v
	return nil
}

// str stores a proto3 string field's value, which must be UTF-8.
func (d *reqDecoder) str(dst *string, start, end int) error {
	if !utf8.Valid(d.b[start:end]) {
		return errBadWire
	}
	*dst = d.s[start:end]
	return nil
}

// fields calls f for each field of the message in b[start:end], with the bounds of a
// length-delimited field's contents (other types get empty bounds). It fails on
// malformed wire data: truncation, field number 0, a bad group.
func (d *reqDecoder) fields(start, end int, f func(num protowire.Number, typ protowire.Type, vs, ve int) error) error {
	at := start
	for at < end {
		num, typ, n := protowire.ConsumeTag(d.b[at:end])
		if n < 0 || num < protowire.MinValidNumber {
			return errBadWire
		}
		at += n
		vs, ve := at, at
		if typ == protowire.BytesType {
			m, n := protowire.ConsumeVarint(d.b[at:end])
			if n < 0 || m > uint64(end-at-n) {
				return errBadWire
			}
			vs, ve = at+n, at+n+int(m)
			at = ve
		} else {
			n = protowire.ConsumeFieldValue(num, typ, d.b[at:end])
			if n < 0 {
				return errBadWire
			}
			at += n
		}
		if err := f(num, typ, vs, ve); err != nil {
			return err
		}
	}
	return nil
}
