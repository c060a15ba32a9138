package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// fetchPhase drives FetchSecrets in a closed loop: o.clients callers on o.conns
// connections, o.warmup unmeasured, then o.duration measured.
func fetchPhase(o options, c *child) error {
	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		conn, err := sdstest.Dial(c.socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := sdstest.Fetch(context.Background(), conn, o.fetchNames...); err != nil {
			return err
		}
		conns[i] = conn
	}
	fmt.Printf("\nfetch: %d callers on %d connections, names %v, warm-up %s, measured %s\n",
		o.clients, o.conns, o.fetchNames, o.warmup, o.duration)

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		errs      atomic.Int64
		errMu     sync.Mutex
		firstErr  error
		wg        sync.WaitGroup
		lat       = make([][]time.Duration, o.clients)
	)
	for i := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := conns[i%len(conns)]
			var mine []time.Duration
			for !stop.Load() {
				t := time.Now()
				r, err := sdstest.Fetch(context.Background(), conn, o.fetchNames...)
				d := time.Since(t)
				if err == nil && len(r.GetResources()) != len(o.fetchNames) {
					err = fmt.Errorf("%d resources, want %d", len(r.GetResources()), len(o.fetchNames))
				}
				if err != nil {
					if errs.Add(1) == 1 {
						errMu.Lock()
						firstErr = err
						errMu.Unlock()
					}
					continue
				}
				if measuring.Load() {
					mine = append(mine, d)
				}
			}
			lat[i] = mine
		}()
	}
	time.Sleep(o.warmup)
	load0 := loadavg()
	srv0, err := c.cpu()
	if err != nil {
		return err
	}
	self0 := selfCPU()
	start := time.Now()
	measuring.Store(true)
	time.Sleep(o.duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	srv1, err := c.cpu()
	if err != nil {
		return err
	}
	self1 := selfCPU()
	stop.Store(true)
	wg.Wait()
	if n := errs.Load(); n > 0 {
		errMu.Lock()
		defer errMu.Unlock()
		return fmt.Errorf("%d calls failed, first: %v", n, firstErr)
	}

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	// Calls that straddle the end of the window were counted when they finished: close
	// enough at tens of thousands of calls.
	slices.Sort(all)
	n := len(all)
	if n == 0 {
		return fmt.Errorf("no call completed in %s", o.duration)
	}
	rate := float64(n) / elapsed.Seconds()
	srvCPU := srv1 - srv0
	fmt.Printf("  FetchSecrets/s  %10.0f   (SPIRE agent ~1,700/s on this machine: %.1f×; target ≥ 8,500/s)\n", rate, rate/1700)
	fmt.Printf("  latency         p50 %s  p90 %s  p99 %s  max %s\n",
		pct(all, 0.50), pct(all, 0.90), pct(all, 0.99), all[n-1].Round(time.Microsecond))
	fmt.Printf("  server CPU      %s per call (%.2f cores busy)\n",
		(srvCPU / time.Duration(n)).Round(100*time.Nanosecond), srvCPU.Seconds()/elapsed.Seconds())
	fmt.Printf("  client CPU      %s per call (%.2f cores busy)\n",
		((self1 - self0) / time.Duration(n)).Round(100*time.Nanosecond), (self1-self0).Seconds()/elapsed.Seconds())
	fmt.Printf("  load average    %s at start, %s at end\n", load0, loadavg())
	return nil
}

// pct returns the q-quantile of sorted durations.
func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(q * float64(len(sorted)-1))
	return sorted[i].Round(time.Microsecond)
}
