// Command sdsload measures the agent's SDS server over its real Unix socket, with the
// server in a child process (this program re-executed with -serve) so that its CPU time
// is read apart from the load generator's, from /proc/<pid>/stat.
//
// Two phases:
//
//   - fetch: N concurrent clients on C connections call FetchSecrets("default") in a
//     closed loop for a fixed time; it reports calls/s, latency percentiles and the
//     server's CPU per call. (SPIRE's agent does about 1,700/s on the project's machine;
//     the target is at least 5× that.)
//   - rotate: S StreamSecrets streams (one connection each by default, as S Envoys would
//     open) subscribe, receive and ACK their first response like Envoy; then the server
//     rotates the certificate R times, and for each rotation the harness reports the time
//     from the rotation until the last stream has received the new certificate (target
//     < 1 s for 1,000 streams), checking every stream got the right serial.
//
// The server is the real sds.Server with a SidecarAuthorizer (SO_PEERCRED, this user),
// fed by a cache holding a certificate from a CA generated at start; rotations install
// certificates issued before the measurement, so each one costs what an identity
// manager's SetIdentity costs.
//
//	go run ./bench/sdsload
//	go run ./bench/sdsload -clients 64 -conns 16 -duration 20s -streams 1000 -rotations 10 -api delta
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	clients, conns       int
	duration, warmup     time.Duration
	streams, streamConns int
	rotations            int
	api                  string
	fetchNames           []string
	streamNames          []string
	dir                  string
	cpuProfile           string
	skipFetch, skipRot   bool
}

func main() {
	var (
		o                     options
		serve                 bool
		socket                string
		leaves                int
		fetchNames, strmNames string
	)
	flag.BoolVar(&serve, "serve", false, "internal: run the server (the child process)")
	flag.StringVar(&socket, "socket", "", "internal: socket path of the child")
	flag.IntVar(&leaves, "leaves", 0, "internal: certificates the child issues ahead for rotations")
	flag.IntVar(&o.clients, "clients", 32, "concurrent FetchSecrets callers")
	flag.IntVar(&o.conns, "conns", 8, "connections the FetchSecrets callers share")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the measured fetch phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before the fetch phase")
	flag.IntVar(&o.streams, "streams", 1000, "open StreamSecrets (or DeltaSecrets) streams in the rotate phase")
	flag.IntVar(&o.streamConns, "stream-conns", 0, "connections the streams share (0: one per stream, as separate Envoys)")
	flag.IntVar(&o.rotations, "rotations", 5, "certificate rotations to time")
	flag.StringVar(&o.api, "api", "sotw", "stream protocol of the rotate phase: sotw or delta")
	flag.StringVar(&fetchNames, "fetch-names", "default", "comma-separated resource names of each FetchSecrets")
	flag.StringVar(&strmNames, "stream-names", "default,ROOTCA", "comma-separated resource names each stream subscribes to (must include default)")
	flag.StringVar(&o.dir, "dir", "", "directory for the socket (default: a temporary directory)")
	flag.StringVar(&o.cpuProfile, "server-cpuprofile", "", "write the server's CPU profile (whole run) to this file")
	flag.BoolVar(&o.skipFetch, "skip-fetch", false, "skip the fetch phase")
	flag.BoolVar(&o.skipRot, "skip-rotate", false, "skip the rotate phase")
	flag.Parse()
	o.fetchNames = strings.Split(fetchNames, ",")
	o.streamNames = strings.Split(strmNames, ",")

	var err error
	if serve {
		err = runServer(socket, leaves, o.cpuProfile, os.Stdin, os.Stdout)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdsload:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.clients < 1 || o.conns < 1 || o.streams < 1 || o.rotations < 1 || o.streamConns < 0 {
		return errors.New("clients, conns, streams and rotations must be positive")
	}
	if o.api != "sotw" && o.api != "delta" {
		return fmt.Errorf("-api %q: want sotw or delta", o.api)
	}
	if o.streamConns == 0 {
		o.streamConns = o.streams
	}
	if o.dir == "" {
		tmp, err := os.MkdirTemp("", "sdsload")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		o.dir = tmp
	}
	child, err := startChild(filepath.Join(o.dir, "agent.sock"), o.rotations, o.cpuProfile)
	if err != nil {
		return err
	}
	defer child.stop()
	fmt.Printf("server: pid %d, socket %s; machine: %d CPUs, load average %s\n", child.cmd.Process.Pid, child.socket, runtime.NumCPU(), loadavg())

	if !o.skipFetch {
		if err := fetchPhase(o, child); err != nil {
			return fmt.Errorf("fetch phase: %w", err)
		}
	}
	if !o.skipRot {
		if err := rotatePhase(o, child); err != nil {
			return fmt.Errorf("rotate phase: %w", err)
		}
	}
	return nil
}

// child is the server process and its control pipe: "rotate" on its stdin installs the
// next certificate, and it answers "rotated <serial>" once SetIdentity has returned.
type child struct {
	cmd    *exec.Cmd
	socket string
	in     io.WriteCloser
	out    *bufio.Scanner
	serial string // serial of the certificate being served
}

func startChild(socket string, rotations int, cpuProfile string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-serve", "-socket", socket, "-leaves", strconv.Itoa(rotations)}
	if cpuProfile != "" {
		abs, err := filepath.Abs(cpuProfile)
		if err != nil {
			return nil, err
		}
		args = append(args, "-server-cpuprofile", abs)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, socket: socket, in: in, out: bufio.NewScanner(out)}
	line, err := c.line()
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("server did not start: %w", err)
	}
	serial, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		c.stop()
		return nil, fmt.Errorf("server said %q", line)
	}
	c.serial = serial
	return c, nil
}

func (c *child) line() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return c.out.Text(), nil
}

// rotate asks the server to install its next certificate; it returns once the server
// has, with the new serial.
func (c *child) rotate() (string, error) {
	if _, err := io.WriteString(c.in, "rotate\n"); err != nil {
		return "", err
	}
	line, err := c.line()
	if err != nil {
		return "", err
	}
	serial, ok := strings.CutPrefix(line, "rotated ")
	if !ok {
		return "", fmt.Errorf("server said %q", line)
	}
	c.serial = serial
	return serial, nil
}

func (c *child) stop() {
	c.in.Close() // the child exits on EOF
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// cpu returns the child's user+system CPU time, from /proc/<pid>/stat.
func (c *child) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// procCPU reads utime and stime (fields 14 and 15, in clock ticks) of a process.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
