package authz

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// AuthorizationService is the name of the ext_authz gRPC service, also used for its gRPC
// health status.
const AuthorizationService = "envoy.service.auth.v3.Authorization"

// grpcService implements envoy.service.auth.v3.Authorization/Check. It never returns a
// gRPC error for a request it could read: denials and "could not decide" are answers, so
// that Envoy shows the client our status and body, not its own failure handling.
type grpcService struct {
	authv3.UnimplementedAuthorizationServer
	c      *checker
	values valueTable
}

// Check answers one CheckRequest.
func (g *grpcService) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	in := inputFromCheckRequest(req)
	r := g.c.check(ctx, in, "grpc")
	return checkResponse(r, g.c.cfg.envoyErrorResponse, &g.values), nil
}

// inputFromCheckRequest reads what the pipeline needs from a CheckRequest. Missing parts
// (no attributes, no HTTP request for a network-filter check) become empty fields, which
// the pipeline answers with a 401 or a deny.
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
	if hm := h.GetHeaderMap(); len(in.Headers) == 0 && hm != nil {
		// Envoy sends header_map instead of headers with encode_raw_headers; repeated
		// names are joined with "," as Envoy joins them in headers.
		in.Headers = make(map[string]string, len(hm.GetHeaders()))
		for _, hv := range hm.GetHeaders() {
			v := hv.GetValue()
			if v == "" && len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			k := strings.ToLower(hv.GetKey())
			if prev, ok := in.Headers[k]; ok {
				v = prev + "," + v
			}
			in.Headers[k] = v
		}
	} else if hasUpper(in.Headers) {
		// Envoy sends lower-case names; other clients may not.
		lower := make(map[string]string, len(in.Headers))
		for k, v := range in.Headers {
			lk := strings.ToLower(k)
			if prev, ok := lower[lk]; ok {
				v = prev + "," + v
			}
			lower[lk] = v
		}
		in.Headers = lower
	}
	setGRPC(in)
	return in
}

// hasUpper reports whether any header name has an upper-case letter.
func hasUpper(h map[string]string) bool {
	for k := range h {
		for i := 0; i < len(k); i++ {
			if k[i] >= 'A' && k[i] <= 'Z' {
				return true
			}
		}
	}
	return false
}

// setGRPC fills GRPCService and GRPCMethod for a gRPC request: content-type
// application/grpc and a path "/package.Service/Method".
func setGRPC(in *Input) {
	if !strings.HasPrefix(in.Headers["content-type"], "application/grpc") {
		return
	}
	p, _, _ := strings.Cut(in.Path, "?")
	svc, method, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if ok && svc != "" && method != "" && !strings.Contains(method, "/") {
		in.GRPCService, in.GRPCMethod = svc, method
	}
}

// checkResponse builds the CheckResponse Envoy expects for r: OK with an
// OkHttpResponse (headers to set with OVERWRITE_IF_EXISTS_OR_ADD, headers to remove,
// response headers for the client), or a non-OK status with a DeniedHttpResponse (status,
// headers, body), and dynamic metadata either way.
func checkResponse(r *Result, errorResponse bool, values *valueTable) *authv3.CheckResponse {
	resp := &authv3.CheckResponse{DynamicMetadata: dynamicMetadata(r, values)}
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
func dynamicMetadata(r *Result, values *valueTable) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 8)
	str := func(k, v string, shared bool) {
		switch {
		case v == "":
		case shared:
			fields[k] = values.get(v)
		default:
			fields[k] = structpb.NewStringValue(v)
		}
	}
	str("decision_id", r.DecisionID, false)
	str("decision", r.Outcome.String(), true)
	str("reason", r.Reason, true)
	str("principal", r.Caller.Principal, false)
	str("credential", r.Caller.Source, true)
	str("domain", r.Domain, true)
	if r.Match != nil {
		str("policy", r.Match.Policy, true)
		fields["assertion_id"] = values.number(r.Match.ID)
	}
	if r.DryRun {
		fields["dry_run"] = structpb.NewBoolValue(true)
	}
	return &structpb.Struct{Fields: fields}
}

// valueTable shares immutable structpb values between responses (protobuf messages are
// safe to marshal concurrently), up to a bound so that unbounded inputs cannot grow it.
// The words every response uses sit in a plain map filled once; the rest (domains,
// policy names, assertion ids) in sync.Maps.
type valueTable struct {
	once    sync.Once
	fixed   map[string]*structpb.Value
	strings sync.Map // string → *structpb.Value
	numbers sync.Map // int → *structpb.Value
	n       atomic.Int64
}

const maxSharedValues = 4096

func (t *valueTable) get(s string) *structpb.Value {
	t.once.Do(func() {
		words := append(CredentialReasons(), "allow", "deny", "unauthenticated", "error",
			SourceAccessToken, SourceRoleToken, SourceRoleCert, SourceMTLS,
			reasonBypass, reasonHeadersTooLarge, reasonNoBundle, reasonInternal)
		for _, r := range []policy.Reason{policy.ReasonAllowed, policy.ReasonDenied, policy.ReasonNoMatch, policy.ReasonNotMember,
			policy.ReasonMemberExpired, policy.ReasonUnknownDomain, policy.ReasonDomainMismatch, policy.ReasonInvalid, policy.ReasonUnknownPrincipal} {
			words = append(words, string(r))
		}
		t.fixed = make(map[string]*structpb.Value, len(words))
		for _, w := range words {
			t.fixed[w] = structpb.NewStringValue(w)
		}
	})
	if v, ok := t.fixed[s]; ok {
		return v
	}
	if v, ok := t.strings.Load(s); ok {
		return v.(*structpb.Value)
	}
	v := structpb.NewStringValue(s)
	if t.n.Load() < maxSharedValues {
		t.n.Add(1)
		t.strings.Store(s, v)
	}
	return v
}

func (t *valueTable) number(i int) *structpb.Value {
	if v, ok := t.numbers.Load(i); ok {
		return v.(*structpb.Value)
	}
	v := structpb.NewNumberValue(float64(i))
	if t.n.Load() < maxSharedValues {
		t.n.Add(1)
		t.numbers.Store(i, v)
	}
	return v
}
