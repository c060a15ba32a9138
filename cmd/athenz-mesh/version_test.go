package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want versionInfo
	}{
		{"no build info", nil, false, versionInfo{Version: "unknown", Go: runtime.Version()}},
		{
			name: "release with vcs",
			bi: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
				{Key: "vcs.modified", Value: "true"}, {Key: "-race", Value: "true"},
			}},
			ok:   true,
			want: versionInfo{Version: "v0.3.0", Revision: "0123abc", Time: "2026-01-02T03:04:05Z", Modified: true, Go: "go1.26.0"},
		},
		{
			name: "checkout without vcs",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}},
			ok:   true,
			want: versionInfo{Version: "(devel)", Go: "go1.26.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := readVersion(tt.bi, tt.ok); got != tt.want {
				t.Errorf("readVersion = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWriteVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    versionInfo
		want string
	}{
		{versionInfo{Version: "(devel)", Go: "go1.26.0"}, "athenz-mesh (devel)\nrevision unknown\ngo1.26.0\n"},
		{
			versionInfo{Version: "v1.0.0", Revision: "abc", Time: "2026-01-02T03:04:05Z", Modified: true, Go: "go1.26.0"},
			"athenz-mesh v1.0.0\nrevision abc (modified) 2026-01-02T03:04:05Z\ngo1.26.0\n",
		},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := writeVersion(&b, tt.v, false); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("writeVersion(%+v) = %q, want %q", tt.v, b.String(), tt.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "version")
	r.expect(t, 0, "athenz-mesh ", "revision ", runtime.Version())

	r = runCLI(t, "version", "--json")
	r.expect(t, 0)
	var v versionInfo
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("version --json is not a versionInfo: %v\n%s", err, r.stdout)
	}
	if v.Version == "" || v.Go != runtime.Version() {
		t.Errorf("version --json = %+v, want a version and Go %s", v, runtime.Version())
	}
}
