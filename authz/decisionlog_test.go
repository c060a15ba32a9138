package authz

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestDecisionLogMasksCredentials(t *testing.T) {
	var buf bytes.Buffer
	d := newDecisionLog(&buf, nil, DecisionLogConfig{Output: "x", IncludeHeaders: true})
	in := &Input{Method: "GET", Path: "/p?access_token=SECRET1", Host: "h", Headers: map[string]string{
		"authorization":       "Bearer SECRET2",
		"athenz-role-auth":    "v=Z1;d=sports;r=readers;s=SECRET3",
		"cookie":              "session=SECRET4",
		"x-other":             "visible",
		"proxy-authorization": "SECRET5",
	}}
	r := &Result{Outcome: OutcomeDeny, Status: 403, Reason: "not_member", DecisionID: "id1",
		Caller: Caller{Principal: "sports.api", Source: SourceMTLS}, Domain: "sports", Action: "get", Resource: "sports:/p"}
	d.record(in, r, "grpc", 0)
	line := buf.String()
	for _, secret := range []string{"SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5"} {
		if strings.Contains(line, secret) {
			t.Errorf("log line carries %s: %s", secret, line)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", line)
	}
	headers, _ := rec["headers"].(map[string]any)
	if rec["msg"] != "decision" || rec["path"] != "/p" || rec["reason"] != "not_member" || rec["decision"] != "deny" ||
		headers["x-other"] != "visible" || headers["authorization"] != "Bearer [masked]" {
		t.Errorf("record %v", rec)
	}
}

func TestDecisionLogSampling(t *testing.T) {
	var buf bytes.Buffer
	zero := 0.0
	d := newDecisionLog(&buf, nil, DecisionLogConfig{Output: "x", AllowSampleRate: &zero})
	in := &Input{Path: "/"}
	d.record(in, &Result{Outcome: OutcomeAllow}, "grpc", 0)
	if buf.Len() != 0 {
		t.Errorf("allow logged at rate 0: %s", buf.String())
	}
	d.record(in, &Result{Outcome: OutcomeDeny}, "grpc", 0)
	d.record(in, &Result{Outcome: OutcomeError}, "grpc", 0)
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines, want the deny and the error", n)
	}
	var nilLog *decisionLog
	nilLog.record(in, &Result{}, "grpc", 0) // off: no panic
}
