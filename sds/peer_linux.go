//go:build linux

package sds

import (
	"net"
	"syscall"
)

// readPeerCred reads SO_PEERCRED from a connected Unix socket.
func readPeerCred(c *net.UnixConn) (PeerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return PeerCred{}, err
	}
	var (
		ucred *syscall.Ucred
		serr  error
	)
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, err
	}
	if serr != nil {
		return PeerCred{}, serr
	}
	return PeerCred{UID: ucred.Uid, GID: ucred.Gid, PID: ucred.Pid}, nil
}
