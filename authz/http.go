package authz

import (
	"net/http"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// headerXFCC is the header an Envoy HCM sets with the peer certificate's details.
const headerXFCC = "x-forwarded-client-cert"

// headerAuthHeadersToRemove tells Envoy's HTTP ext_authz client which request headers to
// remove before the request goes upstream (the HTTP form of headers_to_remove).
const headerAuthHeadersToRemove = "x-envoy-auth-headers-to-remove"

// httpService answers Envoy's HTTP ext_authz mode (http_service) and Istio's
// envoyExtAuthzHttp provider. Envoy sends the original method, its path_prefix followed
// by the original path, and the allowed headers; it treats 200 as an allow (copying the
// response headers named in allowed_upstream_headers onto the upstream request) and sends
// any other answer to the client as it is.
type httpService struct {
	c         *checker
	prefix    string
	trustXFCC bool
}

func (h *httpService) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	in, ok := h.input(req)
	var r *Result
	if ok {
		r = h.c.check(req.Context(), in, "http")
	} else {
		r = h.c.refuse(in, http.StatusForbidden, policy.ReasonInvalid, "http")
	}
	hdr := w.Header()
	if r.Allowed {
		for _, x := range r.UpstreamHeaders {
			hdr.Set(x.Name, x.Value)
		}
		for _, x := range r.ClientHeaders {
			hdr.Set(x.Name, x.Value)
		}
		if len(r.RemoveHeaders) > 0 {
			hdr.Set(headerAuthHeadersToRemove, strings.Join(r.RemoveHeaders, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, x := range r.ClientHeaders {
		hdr.Set(x.Name, x.Value)
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write([]byte(r.Body))
}

// input builds the pipeline's Input; ok is false when the path lacks the configured
// prefix. The request body, which Envoy may forward, is never read.
func (h *httpService) input(req *http.Request) (*Input, bool) {
	in := &Input{
		Method:  req.Method,
		Host:    req.Host,
		Headers: make(map[string]string, len(req.Header)),
	}
	for k, vs := range req.Header {
		in.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	path := req.RequestURI
	if h.prefix != "" {
		rest, found := strings.CutPrefix(path, h.prefix)
		if !found || (rest != "" && rest[0] != '/' && rest[0] != '?') {
			in.Path = path
			return in, false
		}
		if rest == "" || rest[0] == '?' {
			rest = "/" + rest
		}
		path = rest
	}
	in.Path = path
	if xfcc, ok := in.Headers[headerXFCC]; ok {
		if h.trustXFCC {
			// A malformed header leaves the peer unknown: the request is then judged on
			// its other credentials, or answered 401.
			in.SourcePrincipal, in.SourceCertificate, _ = peerFromXFCC(xfcc)
		} else {
			delete(in.Headers, headerXFCC)
		}
	}
	setGRPC(in)
	return in, true
}
