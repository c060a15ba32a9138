package authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

// maskedHeaders are the headers whose values never reach the decision log: they carry
// credentials. Authorization keeps its scheme ("Bearer [masked]") for debugging.
var maskedHeaders = map[string]bool{
	"authorization":         true,
	"proxy-authorization":   true,
	"athenz-role-auth":      true,
	"athenz-principal-auth": true,
	"cookie":                true,
	"set-cookie":            true,
	"x-api-key":             true,
}

const maskedValue = "[masked]"

// decisionLog writes one JSON line per sampled decision through log/slog. Only the
// listed fields are written: the path without its query string (queries can carry
// tokens), masked headers, never a token or key. It is safe for concurrent use.
type decisionLog struct {
	log            *slog.Logger
	allowRate      float64
	denyRate       float64
	includeHeaders bool
	closer         io.Closer
}

// openDecisionLog opens cfg's output; a zero cfg returns nil (no decision log).
func openDecisionLog(cfg DecisionLogConfig) (*decisionLog, error) {
	var w io.Writer
	var closer io.Closer
	switch cfg.Output {
	case "":
		return nil, nil
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(cfg.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open decision log: %w", err)
		}
		w, closer = f, f
	}
	return newDecisionLog(w, closer, cfg), nil
}

func newDecisionLog(w io.Writer, closer io.Closer, cfg DecisionLogConfig) *decisionLog {
	rate := func(r *float64) float64 {
		if r == nil {
			return 1
		}
		return *r
	}
	return &decisionLog{
		log:            slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})),
		allowRate:      rate(cfg.AllowSampleRate),
		denyRate:       rate(cfg.DenySampleRate),
		includeHeaders: cfg.IncludeHeaders,
		closer:         closer,
	}
}

func (d *decisionLog) close() error {
	if d == nil || d.closer == nil {
		return nil
	}
	return d.closer.Close()
}

// sampled reports whether r is to be logged.
func (d *decisionLog) sampled(r *Result) bool {
	var rate float64
	switch r.Outcome {
	case OutcomeError:
		return true
	case OutcomeAllow:
		rate = d.allowRate
	default:
		rate = d.denyRate
	}
	return rate >= 1 || (rate > 0 && rand.Float64() < rate)
}

// record logs one decision, when sampled.
func (d *decisionLog) record(in *Input, r *Result, transport string, took time.Duration) {
	if d == nil || !d.sampled(r) {
		return
	}
	path, _, _ := strings.Cut(in.Path, "?")
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("decision_id", r.DecisionID),
		slog.String("decision", r.Outcome.String()),
		slog.Bool("allowed", r.Allowed),
		slog.Int("status", r.Status),
		slog.String("reason", r.Reason),
		slog.String("transport", transport),
		slog.String("method", in.Method),
		slog.String("host", in.Host),
		slog.String("path", path),
		slog.String("source_principal", in.SourcePrincipal),
		slog.String("principal", r.Caller.Principal),
		slog.String("credential", r.Caller.Source),
		slog.String("domain", r.Domain),
		slog.String("action", r.Action),
		slog.String("resource", r.Resource),
		slog.String("revision", r.Revision),
		slog.Int64("latency_ns", took.Nanoseconds()),
	)
	if r.Caller.TokenDomain != "" {
		attrs = append(attrs, slog.String("token_domain", r.Caller.TokenDomain), slog.Any("token_roles", r.Caller.Roles))
	}
	if r.Match != nil {
		attrs = append(attrs, slog.String("policy", r.Match.Policy), slog.Int("assertion_id", r.Match.ID),
			slog.String("assertion_role", r.Match.Role), slog.String("effect", string(r.Match.Effect)))
	}
	if r.DryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	if r.Bypass {
		attrs = append(attrs, slog.Bool("bypass", true))
	}
	if d.includeHeaders {
		attrs = append(attrs, slog.Any("headers", maskHeaders(in.Headers)))
	}
	d.log.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
}

// maskHeaders copies headers with credential values masked.
func maskHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		lk := strings.ToLower(k)
		switch {
		case lk == "authorization" || lk == "proxy-authorization":
			scheme, _, _ := strings.Cut(v, " ")
			if scheme == v || !isTokenChars(scheme) {
				out[k] = maskedValue
			} else {
				out[k] = scheme + " " + maskedValue
			}
		case maskedHeaders[lk]:
			out[k] = maskedValue
		default:
			out[k] = v
		}
	}
	return out
}

// isTokenChars reports whether s looks like an auth scheme name, not a credential.
func isTokenChars(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '-' {
			return false
		}
	}
	return true
}
