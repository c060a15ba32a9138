package issuer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiError is a refusal with the HTTP status and the caller-facing message of the Athenz
// error body, plus a short fixed reason for the audit log and the metrics label. The
// message never holds a secret or a whole credential.
type apiError struct {
	status  int
	reason  string
	message string
	cause   error // for the log only, never sent
}

// Error formats the refusal for logs.
func (e *apiError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.status, e.reason, e.message, e.cause)
	}
	return fmt.Sprintf("%d %s: %s", e.status, e.reason, e.message)
}

// Unwrap returns the cause.
func (e *apiError) Unwrap() error { return e.cause }

// refuse builds an apiError; format and args make the caller-facing message.
func refuse(status int, reason, format string, args ...any) *apiError {
	return &apiError{status: status, reason: reason, message: fmt.Sprintf(format, args...)}
}

// Refusal reasons used by several routes (metric labels; keep the set bounded).
const (
	reasonBadRequest      = "bad_request"
	reasonBadCSR          = "bad_csr"
	reasonUnauthenticated = "unauthenticated"
	reasonForbidden       = "forbidden"
	reasonNotFound        = "not_found"
	reasonNotMember       = "not_member"
	reasonLaunchDenied    = "launch_denied"
	reasonUnknownProvider = "unknown_provider"
	reasonRevoked         = "revoked"
	reasonNotCurrent      = "not_current"
	reasonNotRefreshable  = "not_refreshable"
	reasonTooLarge        = "too_large"
	reasonUnavailable     = "unavailable"
	reasonInternal        = "internal"
)

func badRequest(format string, args ...any) *apiError {
	return refuse(http.StatusBadRequest, reasonBadRequest, format, args...)
}

func forbidden(reason, format string, args ...any) *apiError {
	return refuse(http.StatusForbidden, reason, format, args...)
}

func notFound(format string, args ...any) *apiError {
	return refuse(http.StatusNotFound, reasonNotFound, format, args...)
}

func unauthenticated(format string, args ...any) *apiError {
	return refuse(http.StatusUnauthorized, reasonUnauthenticated, format, args...)
}

// internal wraps an unexpected failure: the caller sees a generic message, the log the cause.
func internal(what string, err error) *apiError {
	return &apiError{status: http.StatusInternalServerError, reason: reasonInternal, message: what + " failed", cause: err}
}

// unavailable wraps a dependency outage (the store): 503.
func unavailable(what string, err error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, reason: reasonUnavailable, message: what + " is unavailable", cause: err}
}

// asAPIError turns any error into an apiError: unknown errors are internal.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return internal("request", err)
}

// writeJSON sends v with the status, not cacheable unless the handler said otherwise. Encoding errors cannot be reported any more (the
// status is out), so they are ignored: v is always one of the types in types.go.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"code":500,"message":"response encoding failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError sends the Athenz error body for e.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, ErrorBody{Code: e.status, Message: e.message})
}

// decodeBody reads one JSON document of at most limit bytes into v. An over-long body is
// 413, anything that is not exactly one JSON object of the right shape is 400.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return badRequest("Content-Type %.60q: want application/json", ct)
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badRequest("request body is not a valid JSON document: %s", shortJSONError(err))
	}
	if dec.More() {
		return badRequest("request body has data after the JSON document")
	}
	return nil
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, refuse(http.StatusRequestEntityTooLarge, reasonTooLarge, "request body is larger than %d bytes", limit)
		}
		return nil, badRequest("reading the request body failed")
	}
	return body, nil
}

// shortJSONError keeps decoding errors short and free of the input.
func shortJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: want %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
