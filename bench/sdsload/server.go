package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds"
	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// The identity the server serves as "default".
const (
	principal   = "sports.api"
	trustDomain = "athenz.test"
	spiffeID    = "spiffe://" + trustDomain + "/ns/default/sa/" + principal
)

// runServer is the child: a real sds.Server on socket, with a SidecarAuthorizer for this
// user, and a cache holding a certificate from a CA generated now. It prints
// "ready <serial>" once serving (and, with cpuProfile, profiles itself until it stops), then installs the next of leaves pre-issued certificates
// for each "rotate" line on in, answering "rotated <serial>". It stops at EOF on in.
func runServer(socket string, leaves int, cpuProfile string, in io.Reader, out io.Writer) error {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ca, err := sdstest.NewCA("sdsload root")
	if err != nil {
		return err
	}
	creds := make([]*sds.Credential, leaves+1)
	serials := make([]string, len(creds))
	for i := range creds {
		l, err := ca.Issue(principal, spiffeID, 24*time.Hour)
		if err != nil {
			return err
		}
		creds[i] = &sds.Credential{Chain: l.Chain, Key: l.Key}
		serials[i] = l.Cert.SerialNumber.String()
	}
	cache := sds.NewCache()
	if err := cache.SetBundle(&sds.Bundle{Roots: []*x509.Certificate{ca.Cert}, TrustDomains: []string{trustDomain}}); err != nil {
		return err
	}
	if err := cache.SetIdentity(principal, creds[0]); err != nil {
		return err
	}
	auth, err := sds.NewSidecarAuthorizer([]string{principal}, nil, nil)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := sds.New(sds.Config{SocketPath: socket}, sds.Deps{Cache: cache, Authorizer: auth, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	fmt.Fprintf(out, "ready %s\n", serials[0])

	next := 1
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "rotate" {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		if next == len(creds) {
			return errors.New("out of pre-issued certificates")
		}
		if err := cache.SetIdentity(principal, creds[next]); err != nil {
			return err
		}
		fmt.Fprintf(out, "rotated %s\n", serials[next])
		next++
	}
	cancel()
	return <-done
}
