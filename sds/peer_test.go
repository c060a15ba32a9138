package sds

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestPeerCredentialsOnUnixSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is Linux only")
	}
	e := newEnv(t, envOptions{})
	e.setBundle()
	e.issue(idAPI)
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	recv(t, c)
	e.auth.mu.Lock()
	peers := slices.Clone(e.auth.peers)
	e.auth.mu.Unlock()
	want := PeerCred{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	if len(peers) == 0 || peers[0] != want {
		t.Fatalf("authorizer saw %v, want %v", peers, want)
	}
}

func TestPeerCredentialsRefuseTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1)
			c.Read(buf)
		}
	}()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := PeerCredentials().ServerHandshake(conn); !errors.Is(err, ErrNotUnixSocket) {
		t.Fatalf("TCP handshake: %v, want ErrNotUnixSocket", err)
	}
	if _, _, err := PeerCredentials().ClientHandshake(context.Background(), "x", conn); err == nil {
		t.Fatal("client handshake accepted")
	}
	if PeerCredentials().Info().SecurityProtocol != AuthType {
		t.Fatal("wrong protocol info")
	}
}

func TestPeerCredentialsHandshakeOnUnixSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is Linux only")
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, info, err := PeerCredentials().ServerHandshake(conn)
	if err != nil {
		t.Fatal(err)
	}
	pi, ok := info.(PeerInfo)
	if !ok || pi.AuthType() != AuthType || pi.Cred.PID != int32(os.Getpid()) || pi.Cred.UID != uint32(os.Getuid()) {
		t.Fatalf("auth info %+v", info)
	}
}

func TestSidecarAuthorizer(t *testing.T) {
	own := uint32(os.Getuid())
	for _, tc := range []struct {
		name       string
		uids, gids []uint32
		peer       PeerCred
		granted    bool
	}{
		{"default allows own uid", nil, nil, PeerCred{UID: own, GID: 5}, true},
		{"default allows root", nil, nil, PeerCred{UID: 0, GID: 5}, true},
		{"default refuses others", nil, nil, PeerCred{UID: 31337, GID: 31337}, own == 31337},
		{"listed uid", []uint32{1337}, nil, PeerCred{UID: 1337}, true},
		{"unlisted uid", []uint32{1337}, nil, PeerCred{UID: 0, GID: 0}, false},
		{"listed gid", nil, []uint32{1337}, PeerCred{UID: 999, GID: 1337}, true},
		{"neither", []uint32{1}, []uint32{2}, PeerCred{UID: 3, GID: 4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewSidecarAuthorizer([]string{idAPI, idWeb}, tc.uids, tc.gids)
			if err != nil {
				t.Fatal(err)
			}
			g, err := a.Authorize(context.Background(), tc.peer)
			if err != nil {
				t.Fatal(err)
			}
			if tc.granted != (len(g.Identities) == 2 && g.Identities[0] == idAPI) {
				t.Fatalf("grant %+v", g)
			}
			if !tc.granted && g.Reason == "" {
				t.Fatal("refusal without a reason")
			}
		})
	}
	if _, err := NewSidecarAuthorizer([]string{"not a principal"}, nil, nil); err == nil {
		t.Fatal("bad identity name accepted")
	}
}
