//go:build !linux

package sds

import (
	"errors"
	"net"
)

// readPeerCred is implemented on Linux only (SO_PEERCRED); elsewhere every connection
// fails the handshake rather than being served unidentified.
func readPeerCred(*net.UnixConn) (PeerCred, error) {
	return PeerCred{}, errors.New("peer credentials are only read on Linux")
}
