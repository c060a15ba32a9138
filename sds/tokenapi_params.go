package sds

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// Request bounds of the token API. A real request is a few hundred bytes; anything much
// larger is refused before any work.
const (
	// tapiMaxQuery bounds the raw query string.
	tapiMaxQuery = 4 << 10
	// tapiMaxHeaderBytes bounds the request line and headers (http.Server.MaxHeaderBytes).
	tapiMaxHeaderBytes = 8 << 10
	// tapiMaxRoles bounds the roles of one request.
	tapiMaxRoles = 64
	// tapiMaxLifetime is Athenz's cap on token lifetimes (30 days).
	tapiMaxLifetime = athenz.DefaultTokenMaxLifetime
)

// Query parameter names.
const (
	tapiParamIdentity  = "identity"
	tapiParamDomain    = "domain"
	tapiParamRole      = "role"
	tapiParamExpiresIn = "expires_in"
)

// tapiError is an answer other than 200: its status, the parameter at fault (empty when
// none is) and a message for the caller. Messages never hold a token or a key.
type tapiError struct {
	status int
	param  string
	msg    string
	// retryAfter, when positive, is sent as Retry-After (whole seconds, rounded up): the
	// caller should retry, and not before then.
	retryAfter time.Duration
}

func (e *tapiError) Error() string {
	if e.param != "" {
		return fmt.Sprintf("parameter %s: %s", e.param, e.msg)
	}
	return e.msg
}

func tapiBadParam(param, format string, args ...any) *tapiError {
	return &tapiError{status: http.StatusBadRequest, param: param, msg: fmt.Sprintf(format, args...)}
}

// tapiParams are a request's validated parameters. Names are lowercased, as the issuer
// would; roles are sorted and deduplicated so that equal requests share a cache entry.
type tapiParams struct {
	identity  string
	domain    string
	roles     []string
	expiresIn time.Duration
}

// tapiParamSet says which parameters besides identity an endpoint takes.
type tapiParamSet struct {
	domain    bool // domain (required) and role
	expiresIn bool
}

// parseTapiQuery reads and validates a raw query string. Unknown and repeated parameters
// are refused, so a typo ("roles=") is an error rather than a token for every role.
func parseTapiQuery(raw string, set tapiParamSet) (tapiParams, *tapiError) {
	var p tapiParams
	if len(raw) > tapiMaxQuery {
		return p, &tapiError{status: http.StatusRequestURITooLong, msg: fmt.Sprintf("query string longer than %d bytes", tapiMaxQuery)}
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return p, tapiBadParam("", "query string: %v", err)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := q[k]
		known := k == tapiParamIdentity || (set.domain && (k == tapiParamDomain || k == tapiParamRole)) || (set.expiresIn && k == tapiParamExpiresIn)
		if !known {
			return p, tapiBadParam(tapiShort(k), "unknown parameter")
		}
		if k != tapiParamRole && len(vs) > 1 {
			return p, tapiBadParam(k, "given %d times; give it once", len(vs))
		}
		var perr *tapiError
		switch k {
		case tapiParamIdentity:
			p.identity, perr = parseTapiIdentity(vs[0])
		case tapiParamDomain:
			p.domain = strings.ToLower(vs[0])
			if err := athenz.ValidateDomainName(p.domain); err != nil {
				perr = tapiBadParam(k, "%v", err)
			}
		case tapiParamRole:
			p.roles, perr = parseTapiRoles(vs)
		case tapiParamExpiresIn:
			p.expiresIn, perr = parseTapiExpiresIn(vs[0])
		}
		if perr != nil {
			return p, perr
		}
	}
	if set.domain && p.domain == "" {
		return p, tapiBadParam(tapiParamDomain, "required")
	}
	return p, nil
}

func parseTapiIdentity(v string) (string, *tapiError) {
	id := strings.ToLower(v)
	if err := validIdentityName(id); err != nil {
		return "", tapiBadParam(tapiParamIdentity, "%v", err)
	}
	return id, nil
}

// parseTapiRoles accepts role=r1&role=r2 and the comma list ZTS takes, role=r1,r2. Roles
// are short names ("readers"), not "domain:role.readers".
func parseTapiRoles(vs []string) ([]string, *tapiError) {
	var roles []string
	for _, v := range vs {
		for r := range strings.SplitSeq(v, ",") {
			r = strings.ToLower(r)
			if err := athenz.ValidateEntityName(r); err != nil {
				return nil, tapiBadParam(tapiParamRole, "%v (give short role names, such as role=readers)", err)
			}
			roles = append(roles, r)
			if len(roles) > tapiMaxRoles {
				return nil, tapiBadParam(tapiParamRole, "more than %d roles", tapiMaxRoles)
			}
		}
	}
	slices.Sort(roles)
	return slices.Compact(roles), nil
}

// parseTapiExpiresIn reads a lifetime in whole seconds; 0 means the configured default.
func parseTapiExpiresIn(v string) (time.Duration, *tapiError) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > int64(tapiMaxLifetime/time.Second) {
		return 0, tapiBadParam(tapiParamExpiresIn, "%.32q: want whole seconds from 0 (the default) to %d", v, int64(tapiMaxLifetime/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

// tapiShort bounds a caller-supplied string repeated in an answer.
func tapiShort(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
