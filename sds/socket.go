package sds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Socket defaults (Config documents them).
const (
	// DefaultSocketMode lets every local user connect. Connecting to a Unix socket needs
	// write permission; who gets what is decided per connection from the peer's kernel
	// credentials, so the mode is not the access control. Athenz SIA uses 0777 (the
	// execute bits mean nothing on a socket).
	DefaultSocketMode fs.FileMode = 0o666
	// DefaultDirMode is the mode of socket directories the agent creates.
	DefaultDirMode fs.FileMode = 0o755
	// IstioSocketPath is where Istio's proxy looks for a workload SDS socket; when it
	// exists the proxy asks it for "default" and "ROOTCA" instead of istio-agent.
	IstioSocketPath = "/run/secrets/workload-spiffe-uds/socket"
)

// ErrSocketInUse is returned when another process is serving on the socket path.
var ErrSocketInUse = errors.New("socket is in use by another server")

// listenUnix prepares path and listens on it: missing parent directories are created
// with dirMode (existing ones are left alone), a stale socket left by a previous run is
// removed (but only if it is a socket and nobody answers on it; any other file is an
// error, never deleted), and the new socket gets mode sockMode.
func listenUnix(path string, dirMode, sockMode fs.FileMode) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("socket path is required")
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("socket path %s exists and is not a socket (%s); refusing to remove it", path, fi.Mode().Type())
	case err == nil:
		if c, derr := net.DialTimeout("unix", path, 500*time.Millisecond); derr == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrSocketInUse)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("socket path: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The listener unlinks the socket file when closed.
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, sockMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}
