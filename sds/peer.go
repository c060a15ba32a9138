package sds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerCred is what the kernel says about the process at the other end of a Unix socket
// (SO_PEERCRED), read once when the connection is accepted: the credentials of the
// process that called connect(2), which a client cannot forge.
type PeerCred struct {
	// UID and GID are the effective user and group ids of the peer.
	UID, GID uint32
	// PID is the peer's process id in the agent's pid namespace (0 when the peer is in a
	// pid namespace the agent cannot see into).
	PID int32
}

// String formats the credentials for logs.
func (p PeerCred) String() string { return fmt.Sprintf("uid=%d gid=%d pid=%d", p.UID, p.GID, p.PID) }

// AuthType is the gRPC auth type of connections accepted by PeerCredentials.
const AuthType = "athenz-mesh-uds"

// PeerInfo is the credentials.AuthInfo that PeerCredentials attaches to every connection;
// handlers read it with PeerCredFromContext.
type PeerInfo struct {
	credentials.CommonAuthInfo
	// Cred is what the kernel reported when the connection was accepted.
	Cred PeerCred
}

// AuthType returns AuthType.
func (PeerInfo) AuthType() string { return AuthType }

// PeerCredFromContext returns the peer credentials of the connection a gRPC call arrived
// on; ok is false when the server does not use PeerCredentials.
func PeerCredFromContext(ctx context.Context) (PeerCred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerCred{}, false
	}
	info, ok := p.AuthInfo.(PeerInfo)
	return info.Cred, ok
}

// ErrNotUnixSocket is returned by the server handshake for a connection that is not a
// Unix socket: the agent serves secrets only to local processes it can identify.
var ErrNotUnixSocket = errors.New("connection is not a Unix socket; peer credentials are unavailable")

// PeerCredentials returns gRPC transport credentials for a server on a Unix socket: no
// TLS (the socket is local), but every accepted connection carries its peer's
// credentials as PeerInfo, and connections that are not Unix sockets fail the
// handshake. They are server-side only; clients dial with insecure credentials.
func PeerCredentials() credentials.TransportCredentials { return peerCreds{} }

type peerCreds struct{}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("sds: PeerCredentials are server-side only")
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, ErrNotUnixSocket
	}
	cred, err := readPeerCred(uc)
	if err != nil {
		return nil, nil, fmt.Errorf("read peer credentials: %w", err)
	}
	// A Unix socket never leaves the host: the same level gRPC's local credentials give.
	return conn, PeerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Cred: cred}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType, ServerName: "athenz-mesh-agent"}
}

func (p peerCreds) Clone() credentials.TransportCredentials { return p }

func (peerCreds) OverrideServerName(string) error { return nil }

// Grant is what a peer may receive: the identities (cache names) it is entitled to. The
// first is the one the resource name "default" and the Workload API's default SVID mean.
// The trust bundle is public and is served to every local peer.
type Grant struct {
	// Identities are Athenz principals, "<domain>.<service>"; empty when the peer is
	// entitled to none.
	Identities []string
	// Reason says, for logs, why Identities is empty.
	Reason string
}

// Authorizer decides which identities a connected peer may receive. It is called once per
// stream and once per unary call, with the peer's kernel credentials.
//
// An error means "could not decide" (the pod lookup failed, the process was not found in
// time): streams retry with backoff. A Grant with no identities and no error is a
// decision; it is not retried for the life of the stream.
type Authorizer interface {
	// Authorize returns the grant of peer p. It must be safe for concurrent use and
	// should answer quickly: a stream's first response waits for it.
	Authorize(ctx context.Context, p PeerCred) (Grant, error)
}

// SidecarAuthorizer is the sidecar-mode Authorizer: the agent runs beside one workload
// (or a few services of one host, as Athenz SIA does) and hands its configured identities
// to processes running as allowed users or groups.
type SidecarAuthorizer struct {
	identities []string
	uids, gids []uint32
}

// NewSidecarAuthorizer returns an Authorizer granting identities (the first is
// "default") to peers whose uid is in uids or whose gid is in gids. With both lists nil
// the allowed uids are the agent's own uid and root (0). Athenz SIA's equivalent is its
// per-service sds_uds_uid, which defaults to root only.
func NewSidecarAuthorizer(identities []string, uids, gids []uint32) (*SidecarAuthorizer, error) {
	for _, n := range identities {
		if err := validIdentityName(n); err != nil {
			return nil, err
		}
	}
	if uids == nil && gids == nil {
		uids = []uint32{0}
		if u := uint32(os.Getuid()); u != 0 {
			uids = append(uids, u)
		}
	}
	return &SidecarAuthorizer{identities: slices.Clone(identities), uids: slices.Clone(uids), gids: slices.Clone(gids)}, nil
}

// Authorize grants the configured identities to an allowed uid or gid, nothing otherwise.
func (a *SidecarAuthorizer) Authorize(_ context.Context, p PeerCred) (Grant, error) {
	if slices.Contains(a.uids, p.UID) || slices.Contains(a.gids, p.GID) {
		return Grant{Identities: a.identities}, nil
	}
	return Grant{Reason: fmt.Sprintf("uid %d not in %v and gid %d not in %v", p.UID, a.uids, p.GID, a.gids)}, nil
}
