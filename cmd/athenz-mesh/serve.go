package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/athenz-mesh/athenz-mesh/authz"
	"github.com/athenz-mesh/athenz-mesh/internal/yamlconfig"
)

// server is a long-running part a subcommand serves: Run until ctx is done, then Close.
type server interface {
	Run(ctx context.Context) error
	Close() error
}

// serveSpec says how serve checks, builds and names one server from its loaded config.
type serveSpec struct {
	// name prefixes an error of Run ("authz: ...").
	name string
	// config is the config file, named in the "config OK" line of --check-config.
	config string
	// checkOnly runs preflight and reports instead of serving.
	checkOnly bool
	// preflight checks what the config refers to without binding or creating anything.
	preflight func() error
	// log configures the server log, written to stderr.
	log authz.LogConfig
	// build makes the server with its logger and a registry that already holds the Go
	// and process collectors.
	build func(*slog.Logger, *prometheus.Registry) (server, error)
}

// serve is the part every server subcommand shares once its config is loaded and
// validated: with --check-config, preflight and "config OK"; otherwise logger, metrics
// registry, build, and Run until ctx is done. Every error is a failure (exit status 2).
func serve(ctx context.Context, stdout, stderr io.Writer, s serveSpec) error {
	if s.checkOnly {
		if err := s.preflight(); err != nil {
			return failed(err)
		}
		fmt.Fprintf(stdout, "%s: config OK\n", s.config)
		return nil
	}
	log, err := authz.NewLogger(s.log, stderr)
	if err != nil {
		return failed(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := s.build(log, reg)
	if err != nil {
		return failed(err)
	}
	defer srv.Close()
	if err := srv.Run(ctx); err != nil {
		return failed(fmt.Errorf("%s: %w", s.name, err))
	}
	return nil
}

// flagOverride replaces a config field with a flag's value when the flag was given.
type flagOverride struct {
	flag  string
	dst   *string
	value string
}

// loadConfigFile is what every server subcommand does with --config: require it, load
// it strictly, apply the flags that were given (overrides names them, pointing into the
// loaded config), and validate, naming the file in every problem. Errors are usage errors
// (no --config) or failures (exit status 2).
func loadConfigFile[T any](cmd *cobra.Command, kind, path string, load func(string) (T, error),
	overrides func(*T) []flagOverride, validate func(*T) error) (T, error) {
	var zero T
	if path == "" {
		return zero, usageErrorf("--config is required: the %s config file", kind)
	}
	cfg, err := load(path)
	if err != nil {
		return zero, failed(err)
	}
	for _, o := range overrides(&cfg) {
		if cmd != nil && cmd.Flags().Changed(o.flag) {
			*o.dst = o.value
		}
	}
	if err := validate(&cfg); err != nil {
		var ce *yamlconfig.Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return zero, failed(err)
	}
	return cfg, nil
}
