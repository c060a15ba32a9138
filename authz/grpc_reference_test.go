package authz

// The CheckRequest reading and CheckResponse building over go-control-plane's generated
// types: the reference that the server's wire decoder and encoder (grpcdecode.go,
// grpcencode.go) are tested against.

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// inputFromCheckRequest reads what the pipeline needs from a CheckRequest. Missing parts
// (no attributes, no HTTP request for a network-filter check) become empty fields, which
// the pipeline answers with a 401 or a deny. The server decodes the wire form with
// decodeCheckRequest instead; this is the same reading over the generated types.
func inputFromCheckRequest(req *authv3.CheckRequest) *Input {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	in := &Input{
		Method:            h.GetMethod(),
		Path:              h.GetPath(),
		Host:              h.GetHost(),
		Headers:           h.GetHeaders(),
		SourcePrincipal:   attrs.GetSource().GetPrincipal(),
		SourceCertificate: attrs.GetSource().GetCertificate(),
		ContextExtensions: attrs.GetContextExtensions(),
	}
	var hm []rawHeader
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if v == "" && len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		hm = append(hm, rawHeader{hv.GetKey(), v})
	}
	normalizeInput(in, hm)
	return in
}

// checkResponse builds the CheckResponse Envoy expects for r: OK with an
// OkHttpResponse (headers to set with OVERWRITE_IF_EXISTS_OR_ADD, headers to remove,
// response headers for the client), or a non-OK status with a DeniedHttpResponse (status,
// headers, body), and dynamic metadata either way.
func checkResponse(r *Result, errorResponse bool) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{DynamicMetadata: dynamicMetadata(r)}
	if r.Allowed {
		resp.Status = &rpcstatus.Status{Code: int32(codes.OK)}
		ok := &authv3.OkHttpResponse{HeadersToRemove: r.RemoveHeaders}
		if len(r.UpstreamHeaders) > 0 {
			ok.Headers = headerOptions(r.UpstreamHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		}
		if len(r.ClientHeaders) > 0 {
			ok.ResponseHeadersToAdd = headerOptions(r.ClientHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: ok}
		return resp
	}
	code := codes.PermissionDenied
	switch r.Outcome {
	case OutcomeUnauthenticated:
		code = codes.Unauthenticated
	case OutcomeError:
		code = codes.Unavailable
	}
	resp.Status = &rpcstatus.Status{Code: int32(code), Message: r.Reason}
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
		Headers: headerOptions(r.ClientHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		Body:    r.Body,
	}
	if r.Outcome == OutcomeError && errorResponse {
		resp.HttpResponse = &authv3.CheckResponse_ErrorResponse{ErrorResponse: denied}
	} else {
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied}
	}
	return resp
}

// headerOptions converts headers, allocating the messages in two blocks rather than two
// per header: the response is built for every check.
func headerOptions(hs []Header, action corev3.HeaderValueOption_HeaderAppendAction) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.Name, h.Value
		opts[i].Header, opts[i].AppendAction = &vals[i], action
		out[i] = &opts[i]
	}
	return out
}

// dynamicMetadata is emitted by Envoy under the ext_authz filter's namespace
// (envoy.filters.http.ext_authz), for access logs and later filters:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%. It has at most eight
// fields (nine in dry-run), and the values drawn from small sets are shared.
func dynamicMetadata(r *Result) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 8)
	str := func(k, v string) {
		if v != "" {
			fields[k] = structpb.NewStringValue(v)
		}
	}
	str("decision_id", r.DecisionID)
	str("decision", r.Outcome.String())
	str("reason", r.Reason)
	str("principal", r.Caller.Principal)
	str("credential", r.Caller.Source)
	str("domain", r.Domain)
	if r.Match != nil {
		str("policy", r.Match.Policy)
		fields["assertion_id"] = structpb.NewNumberValue(float64(r.Match.ID))
	}
	if r.DryRun {
		fields["dry_run"] = structpb.NewBoolValue(true)
	}
	return &structpb.Struct{Fields: fields}
}
