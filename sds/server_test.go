package sds

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// TestIstioSocketLayout serves on the Istio workload socket path (under a temporary root)
// and answers what Istio's proxy asks for there: default and ROOTCA, plus an Istio-form
// SPIFFE ID matching the certificate.
func TestIstioSocketLayout(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, IstioSocketPath)
	e := newEnv(t, envOptions{cfg: Config{SocketPath: path}})
	for _, dir := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != DefaultDirMode&^umask() {
			t.Fatalf("%s mode %v", dir, fi.Mode().Perm())
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != DefaultSocketMode {
		t.Fatalf("socket mode %v", fi.Mode())
	}

	const istioID = "spiffe://cluster.local/ns/prod/sa/api-sa"
	leaf, err := e.ca.Issue(idAPI, istioID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.SetIdentity(idAPI, &Credential{Chain: leaf.Chain, Key: leaf.Key}); err != nil {
		t.Fatal(err)
	}
	e.setBundle()
	ctx := streamCtx(t)
	c := newClient(t, ctx, e)
	if err := c.Subscribe(NameDefault, NameRootCA, istioID, "spiffe://cluster.local/ns/prod/sa/other"); err != nil {
		t.Fatal(err)
	}
	r := recv(t, c)
	if got := names(t, r); !slices.Equal(got, []string{NameRootCA, NameDefault, istioID}) {
		t.Fatalf("got %v", got)
	}
}

// TestServiceAccountWithDot: Kubernetes service account names may hold dots, so an
// Istio-form ID can read as the Athenz namespaced form <domain>.<service>. It is served
// when an entitled certificate carries exactly that ID, and refused otherwise.
func TestServiceAccountWithDot(t *testing.T) {
	e := newEnv(t, envOptions{grant: &Grant{Identities: []string{idAPI, idWeb}}})
	e.setBundle()
	e.issue(idAPI)
	const dotted = "spiffe://cluster.local/ns/prod/sa/web.v2"
	web, err := e.ca.Issue(idWeb, dotted, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.SetIdentity(idWeb, &Credential{Chain: web.Chain, Key: web.Key}); err != nil {
		t.Fatal(err)
	}
	r, err := sdstest.Fetch(streamCtx(t), e.dial(), dotted, "spiffe://cluster.local/ns/prod/sa/other.v2")
	if err != nil {
		t.Fatal(err)
	}
	got := byName(t, r.GetResources())
	if len(got) != 1 || got[dotted] == nil || leafSerial(t, got[dotted]) != web.Cert.SerialNumber.String() {
		t.Fatalf("got %v, want %s with web's certificate", got, dotted)
	}
	if !strings.Contains(e.logs.String(), "name=spiffe://cluster.local/ns/prod/sa/other.v2 reason=not_entitled") {
		t.Fatalf("refusal not logged:\n%s", e.logs)
	}
}

func umask() fs.FileMode {
	dir, err := os.MkdirTemp("", "umask")
	if err != nil {
		return 0
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "x")
	if err := os.Mkdir(p, 0o777); err != nil {
		return 0
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return 0o777 &^ fi.Mode().Perm()
}

func TestSocketPreparation(t *testing.T) {
	t.Run("stale socket removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close() // leaves the file, like a crashed agent
		if _, err := os.Lstat(path); err != nil {
			t.Fatal(err)
		}
		l2, err := listenUnix(path, DefaultDirMode, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		fi, _ := os.Lstat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
	})
	t.Run("live socket refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.sock")
		l, err := listenUnix(path, DefaultDirMode, DefaultSocketMode)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if _, err := listenUnix(path, DefaultDirMode, DefaultSocketMode); !errors.Is(err, ErrSocketInUse) {
			t.Fatalf("got %v, want ErrSocketInUse", err)
		}
	})
	t.Run("regular file never removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := listenUnix(path, DefaultDirMode, DefaultSocketMode); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("got %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Fatal("file was touched")
		}
	})
	t.Run("existing directory mode kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := listenUnix(filepath.Join(dir, "s.sock"), 0o755, DefaultSocketMode)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		fi, _ := os.Stat(dir)
		if fi.Mode().Perm() != 0o700 {
			t.Fatalf("existing directory changed to %v", fi.Mode())
		}
	})
	t.Run("custom directory mode", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new")
		l, err := listenUnix(filepath.Join(dir, "s.sock"), 0o750, DefaultSocketMode)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, _ := os.Stat(dir)
		if fi.Mode().Perm() != 0o750&^umask() {
			t.Fatalf("mode %v", fi.Mode())
		}
	})
}

func TestServerGracefulStop(t *testing.T) {
	checkLeaks(t)
	path := filepath.Join(t.TempDir(), "agent.sock")
	cache := NewCache()
	ca, err := sdstest.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(idAPI, spiffeOf(idAPI), time.Hour)
	if err := cache.SetIdentity(idAPI, &Credential{Chain: leaf.Chain, Key: leaf.Key}); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{SocketPath: path, ShutdownGrace: 2 * time.Second}, Deps{Cache: cache, Authorizer: &fakeAuth{grant: Grant{Identities: []string{idAPI}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	conn, err := sdstest.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := sdstest.NewClient(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(NameDefault); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return: an open stream blocked the graceful stop")
	}
	if _, err := c.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after stop: %v, want Unavailable", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestServerCloseWithoutRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	srv, err := New(Config{SocketPath: path}, Deps{Cache: NewCache(), Authorizer: &fakeAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if _, err := New(Config{}, Deps{Cache: NewCache(), Authorizer: &fakeAuth{}}); err == nil {
		t.Fatal("empty socket path accepted")
	}
	if _, err := New(Config{SocketPath: path}, Deps{}); err == nil {
		t.Fatal("missing deps accepted")
	}
}

func TestHealthFollowsReadiness(t *testing.T) {
	e := newEnv(t, envOptions{cfg: Config{ReadyIdentities: []string{idAPI}}})
	ctx := streamCtx(t)
	h := healthpb.NewHealthClient(e.dial())
	w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: HealthSDS})
	if err != nil {
		t.Fatal(err)
	}
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if st := next(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("empty cache: %v", st)
	}
	e.setBundle()
	e.issue(idAPI)
	if st := next(); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("ready cache: %v", st)
	}
}

func TestSIAServiceNames(t *testing.T) {
	e := newEnv(t, envOptions{grant: &Grant{Identities: []string{idAPI, idWeb}}})
	e.setBundle()
	api, web := e.issue(idAPI), e.issue(idWeb)
	r, err := sdstest.Fetch(streamCtx(t), e.dial(), "spiffe://sports/sa/web", spiffeOf(idAPI), NameDefault)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(t, r.GetResources())
	for name, want := range map[string]string{
		"spiffe://sports/sa/web": web.Cert.SerialNumber.String(),
		spiffeOf(idAPI):          api.Cert.SerialNumber.String(),
		NameDefault:              api.Cert.SerialNumber.String(),
	} {
		if got[name] == nil || leafSerial(t, got[name]) != want {
			t.Fatalf("%s: wrong or missing certificate", name)
		}
	}
}
