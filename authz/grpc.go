package authz

import (
	"context"
	"strings"
)

// AuthorizationService is the name of the ext_authz gRPC service, also used for its gRPC
// health status.
const AuthorizationService = "envoy.service.auth.v3.Authorization"

// grpcService implements envoy.service.auth.v3.Authorization/Check. It never returns a
// gRPC error for a request it could read: denials and "could not decide" are answers, so
// that Envoy shows the client our status and body, not its own failure handling.
type grpcService struct {
	c *checker
}

// checkWire answers one CheckRequest, decoded and encoded by wireCodec.
func (g *grpcService) checkWire(ctx context.Context, req *wireRequest) (*wireResponse, error) {
	r := g.c.check(ctx, &req.in, "grpc")
	return &wireResponse{b: appendCheckResponse(make([]byte, 0, 384), r, g.c.cfg.envoyErrorResponse)}, nil
}

// normalizeInput makes in.Headers what the pipeline expects: Envoy's header_map (sent
// instead of headers with encode_raw_headers) when headers is empty, repeated names
// joined with "," as Envoy joins them in headers, and names in lower case (Envoy sends
// them so; other clients may not). It then recognizes gRPC requests.
func normalizeInput(in *Input, headerMap []rawHeader) {
	if len(in.Headers) == 0 && len(headerMap) > 0 {
		in.Headers = make(map[string]string, len(headerMap))
		for _, hv := range headerMap {
			k, v := strings.ToLower(hv.key), hv.value
			if prev, ok := in.Headers[k]; ok {
				v = prev + "," + v
			}
			in.Headers[k] = v
		}
	} else if hasUpper(in.Headers) {
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
