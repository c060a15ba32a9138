package store_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
	"github.com/athenz-mesh/athenz-mesh/issuer/store/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

// open opens cfg or fails the test, and closes the store when the test ends.
func open(t testing.TB, cfg store.Config) store.Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := store.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// backends lists the backends with a function that makes a new, empty database's Config.
// The PostgreSQL one skips the test unless ATHENZ_MESH_TEST_POSTGRES_DSN is set.
var backends = []struct {
	name   string
	config func(t testing.TB) store.Config
}{
	{"sqlite", func(t testing.TB) store.Config {
		return store.Config{Driver: store.DriverSQLite, DataDir: t.TempDir()}
	}},
	{"postgres", func(t testing.TB) store.Config {
		return store.Config{Driver: store.DriverPostgres, DSN: storetest.PostgresDSN(t)}
	}},
}

func TestConformance(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			be.config(t) // skips early when the backend is unavailable
			storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
				cfg := be.config(t)
				cfg.Now = now
				return open(t, cfg)
			})
		})
	}
}

func TestReplicas(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			be.config(t)
			storetest.RunReplicas(t, func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
				cfg := be.config(t)
				cfg.Now = now
				return open(t, cfg), open(t, cfg)
			})
		})
	}
}

func TestMigrations(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Run("reopening changes nothing", func(t *testing.T) {
				cfg := be.config(t)
				s := open(t, cfg)
				c := store.Certificate{Serial: "1", Kind: store.KindService, Domain: "d", Service: "s",
					InstanceID: "i", NotBefore: time.Unix(0, 0), NotAfter: time.Unix(60, 0)}
				if err := s.PutCertificate(t.Context(), c); err != nil {
					t.Fatal(err)
				}
				s2 := open(t, cfg)
				if _, err := s2.CertificateBySerial(t.Context(), "1"); err != nil {
					t.Fatalf("record lost on reopen: %v", err)
				}
			})
			t.Run("replicas opening a new database together", func(t *testing.T) {
				cfg := be.config(t)
				cfg.Logger = quiet
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for i := range errs {
					wg.Go(func() {
						s, err := store.Open(t.Context(), cfg)
						if err == nil {
							err = s.Close()
						}
						errs[i] = err
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("a newer schema is refused", func(t *testing.T) {
				cfg := be.config(t)
				s := open(t, cfg)
				newer := fstest.MapFS{
					"0001_init.sql":  {Data: []byte("-- already applied")},
					"0002_later.sql": {Data: []byte("CREATE TABLE later (x BIGINT)")},
				}
				if err := store.ApplyMigrations(t.Context(), s, newer); err != nil {
					t.Fatalf("apply version 2: %v", err)
				}
				cfg.Logger = quiet
				_, err := store.Open(t.Context(), cfg)
				if !errors.Is(err, store.ErrSchemaTooNew) {
					t.Fatalf("Open of a version 2 database: %v, want ErrSchemaTooNew", err)
				}
				t.Log(err)
			})
			t.Run("a failing migration leaves nothing behind", func(t *testing.T) {
				cfg := be.config(t)
				s := open(t, cfg)
				broken := fstest.MapFS{
					"0001_init.sql": {Data: []byte("-- already applied")},
					"0002_a.sql":    {Data: []byte("CREATE TABLE a (x BIGINT)")},
					"0003_b.sql":    {Data: []byte("THIS IS NOT SQL")},
				}
				if err := store.ApplyMigrations(t.Context(), s, broken); err == nil {
					t.Fatal("broken migration applied")
				}
				// Version 2 was rolled back with 3, so it applies again cleanly.
				fixed := fstest.MapFS{
					"0001_init.sql": {Data: []byte("-- already applied")},
					"0002_a.sql":    {Data: []byte("CREATE TABLE a (x BIGINT)")},
				}
				if err := store.ApplyMigrations(t.Context(), s, fixed); err != nil {
					t.Fatalf("apply after rollback: %v", err)
				}
			})
		})
	}
}

func TestLoadMigrations(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1")}
	tests := []struct {
		name    string
		files   []string
		driver  string
		want    []string
		wantErr bool
	}{
		{name: "shared", files: []string{"0002_b.sql", "0001_a.sql"}, driver: "sqlite",
			want: []string{"0001_a.sql", "0002_b.sql"}},
		{name: "per-dialect pair", files: []string{"0001_a.sql", "0002_b.sqlite.sql", "0002_b.postgres.sql"},
			driver: "postgres", want: []string{"0001_a.sql", "0002_b.postgres.sql"}},
		{name: "gap", files: []string{"0001_a.sql", "0003_c.sql"}, driver: "sqlite", wantErr: true},
		{name: "not from 1", files: []string{"0002_b.sql"}, driver: "sqlite", wantErr: true},
		{name: "shared and dialect file for one version", files: []string{"0001_a.sql", "0001_a.sqlite.sql"},
			driver: "sqlite", wantErr: true},
		{name: "bad name", files: []string{"0001_a.sql", "2_b.sql"}, driver: "sqlite", wantErr: true},
		{name: "unknown dialect", files: []string{"0001_a.mysql.sql"}, driver: "sqlite", wantErr: true},
		{name: "none", driver: "sqlite", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = file
			}
			got, err := store.MigrationNames(fsys, tt.driver)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEmbeddedMigrationsLoad(t *testing.T) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		// Open is the real check; this only makes a broken file set fail fast and clearly.
		names, err := store.MigrationNames(os.DirFS("migrations"), driver)
		if err != nil || len(names) == 0 {
			t.Fatalf("%s: %v %v", driver, names, err)
		}
	}
}

func TestSQLiteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, store.Config{DataDir: dir})
	if err := s.UseOnce(t.Context(), store.UseRegisterToken, "x", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, store.DefaultFileName: 0o600, store.DefaultFileName + "-wal": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", filepath.Join(dir, name), got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  store.Config
	}{
		{"sqlite without a place", store.Config{}},
		{"unknown driver", store.Config{Driver: "mysql", DSN: "x"}},
		{"postgres without DSN", store.Config{Driver: store.DriverPostgres}},
		{"sqlite with DSN", store.Config{Driver: store.DriverSQLite, DataDir: "x", DSN: "y"}},
		{"negative retention", store.Config{DataDir: "x", CertificateRetention: -1}},
		{"negative connections", store.Config{DataDir: "x", MaxConns: -1}},
		{"bad DSN", store.Config{DSN: "postgres://u:pw@h:notaport/db"}},
		{"path with a query", store.Config{Path: filepath.Join(os.TempDir(), "x?mode=ro")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quiet
			s, err := store.Open(t.Context(), tt.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("Open: %v, want ErrInvalid", err)
			}
		})
	}
}
