package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// receipt is one stream's receipt of a response: when, and the serial of "default" in
// it.
type receipt struct {
	stream int
	at     time.Time
	serial string
	err    error
}

// envoyStream is one Envoy-like SDS stream: next waits for a response, ACKs it and
// returns the resources it carried.
type envoyStream func() ([]*anypb.Any, error)

// openStream opens a SotW or delta stream subscribed to names.
func openStream(ctx context.Context, api string, conn *grpc.ClientConn, names []string) (envoyStream, error) {
	if api == "delta" {
		d, err := sdstest.NewDeltaClient(ctx, conn, nil)
		if err == nil {
			err = d.Subscribe(names...)
		}
		if err != nil {
			return nil, err
		}
		return func() ([]*anypb.Any, error) {
			r, err := d.Recv()
			if err != nil {
				return nil, err
			}
			var out []*anypb.Any
			for _, res := range r.GetResources() {
				out = append(out, res.GetResource())
			}
			return out, d.Ack(r)
		}, nil
	}
	c, err := sdstest.NewClient(ctx, conn)
	if err == nil {
		err = c.Subscribe(names...)
	}
	if err != nil {
		return nil, err
	}
	return func() ([]*anypb.Any, error) {
		r, err := c.Recv()
		if err != nil {
			return nil, err
		}
		return r.GetResources(), c.Ack(r)
	}, nil
}

// defaultSerial returns the serial of the leaf in the "default" secret, "" if absent.
func defaultSerial(rs []*anypb.Any) (string, error) {
	for _, a := range rs {
		s, err := sdstest.DecodeSecret(a)
		if err != nil {
			return "", err
		}
		if s.GetName() != "default" {
			continue
		}
		blk, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
		if blk == nil {
			return "", errors.New("default: no certificate")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", err
		}
		return cert.SerialNumber.String(), nil
	}
	return "", nil
}

// rotatePhase opens o.streams streams, then times o.rotations rotations from the
// server's SetIdentity to the last stream's receipt.
func rotatePhase(o options, c *child) error {
	if !slices.Contains(o.streamNames, "default") {
		return errors.New("-stream-names must include default")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := make([]*grpc.ClientConn, min(o.streamConns, o.streams))
	for i := range conns {
		conn, err := sdstest.Dial(c.socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		conns[i] = conn
	}
	fmt.Printf("\nrotate: %d %s streams on %d connections, names %v\n", o.streams, o.api, len(conns), o.streamNames)

	receipts := make(chan receipt, o.streams)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	for i := range o.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next, err := openStream(ctx, o.api, conns[i%len(conns)], o.streamNames)
			for err == nil {
				var rs []*anypb.Any
				rs, err = next()
				at := time.Now()
				if ctx.Err() != nil {
					return
				}
				var serial string
				if err == nil {
					serial, err = defaultSerial(rs)
				}
				select {
				case receipts <- receipt{stream: i, at: at, serial: serial, err: err}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil && ctx.Err() == nil {
				select {
				case receipts <- receipt{stream: i, err: err}:
				case <-ctx.Done():
				}
			}
		}()
	}
	// Every stream's first response: the certificate being served.
	if _, err := collect(receipts, o.streams, c.serial, start); err != nil {
		return fmt.Errorf("first responses: %w", err)
	}
	fmt.Printf("  %d streams subscribed and served in %s; load average %s\n",
		o.streams, time.Since(start).Round(time.Millisecond), loadavg())

	var worst []time.Duration
	for r := range o.rotations {
		time.Sleep(200 * time.Millisecond) // let the ACKs of the previous round land
		srv0, err := c.cpu()
		if err != nil {
			return err
		}
		t0 := time.Now()
		serial, err := c.rotate()
		if err != nil {
			return err
		}
		lat, err := collect(receipts, o.streams, serial, t0)
		if err != nil {
			return fmt.Errorf("rotation %d: %w", r+1, err)
		}
		srv1, _ := c.cpu()
		worst = append(worst, lat[len(lat)-1])
		fmt.Printf("  rotation %d: all %d streams had the new certificate after %s (p50 %s, p99 %s); server CPU %s; load average %s\n",
			r+1, o.streams, lat[len(lat)-1].Round(time.Microsecond), pct(lat, 0.5), pct(lat, 0.99),
			(srv1 - srv0).Round(time.Millisecond), loadavg())
	}
	slices.Sort(worst)
	fmt.Printf("  rotation to the last of %d streams: median %s, max %s (target < 1s)\n",
		o.streams, pct(worst, 0.5), worst[len(worst)-1].Round(time.Microsecond))
	return nil
}

// collect waits for one receipt per stream carrying serial and returns the sorted delays
// from t0. The clock starts before the server is asked to rotate, so the delays include
// the control pipe: they overstate, never understate.
func collect(receipts <-chan receipt, n int, serial string, t0 time.Time) ([]time.Duration, error) {
	seen := make(map[int]bool, n)
	lat := make([]time.Duration, 0, n)
	timeout := time.After(60 * time.Second)
	for len(lat) < n {
		select {
		case r := <-receipts:
			if r.err != nil {
				return nil, fmt.Errorf("stream %d: %w", r.stream, r.err)
			}
			if r.serial != serial {
				return nil, fmt.Errorf("stream %d got serial %q, want %s", r.stream, r.serial, serial)
			}
			if seen[r.stream] {
				return nil, fmt.Errorf("stream %d got the same certificate twice", r.stream)
			}
			seen[r.stream] = true
			lat = append(lat, r.at.Sub(t0))
		case <-timeout:
			return nil, fmt.Errorf("%d of %d streams received serial %s in 60s", len(lat), n, serial)
		}
	}
	slices.Sort(lat)
	return lat, nil
}
