package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `athenz-mesh version` reports. Its JSON form is stable.
type versionInfo struct {
	// Version is the module version ("v0.3.0", or "(devel)" for a build from a checkout).
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from; empty when unknown (for example
	// with -buildvcs=false, or `go run` outside a repository).
	Revision string `json:"revision,omitempty"`
	// Time is the commit time in RFC 3339; empty when unknown.
	Time string `json:"time,omitempty"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the Go toolchain version the binary was built with.
	Go string `json:"go"`
}

// readVersion collects versionInfo from the build information embedded in the binary.
func readVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "unknown", Go: runtime.Version()}
	if !ok || bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version",
		Long: `Print the module version, the VCS revision the binary was built from, and the Go version.

The revision is "unknown" when the build did not record it (go run outside a git checkout,
or -buildvcs=false).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeVersion(cmd.OutOrStdout(), readVersion(debug.ReadBuildInfo()), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"version", "revision", "time", "modified", "go"} as JSON`)
	return cmd
}

func writeVersion(w io.Writer, v versionInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	rev := v.Revision
	if rev == "" {
		rev = "unknown"
	} else if v.Modified {
		rev += " (modified)"
	}
	if v.Time != "" {
		rev += " " + v.Time
	}
	_, err := fmt.Fprintf(w, "athenz-mesh %s\nrevision %s\n%s\n", v.Version, rev, v.Go)
	return err
}
