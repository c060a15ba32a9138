package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

func TestParseDevPorts(t *testing.T) {
	tests := []struct {
		name, in string
		want     func(devPorts) bool
		wantErr  string
	}{
		{"default", "", func(p devPorts) bool { return p == defaultDevPorts }, ""},
		{"override one", "zts=5443", func(p devPorts) bool { return p.ZTS == 5443 && p.AuthzGRPC == defaultDevPorts.AuthzGRPC }, ""},
		{"override two", "token-api=4081, authz-grpc=10191", func(p devPorts) bool { return p.TokenAPI == 4081 && p.AuthzGRPC == 10191 }, ""},
		{"auto picks distinct ports", "auto", func(p devPorts) bool {
			seen := map[int]bool{}
			for _, f := range p.fields() {
				if *f == 0 || seen[*f] {
					return false
				}
				seen[*f] = true
			}
			return true
		}, ""},
		{"unknown name", "ztz=1", nil, "want auto, or name=port pairs"},
		{"not a number", "zts=x", nil, "want auto"},
		{"out of range", "zts=70000", nil, "want auto"},
		{"a port twice", "zts=9191", nil, "port 9191 is used twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseDevPorts(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseDevPorts(%q) = %v, want error with %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.want(p) {
				t.Fatalf("parseDevPorts(%q) = %+v, %v", tc.in, p, err)
			}
		})
	}
}

func TestDevLayoutRefusesLongSocketPath(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if _, err := newDevLayout(deep, ""); err == nil || !strings.Contains(err.Error(), "Unix sockets allow") {
		t.Fatalf("newDevLayout(deep) = %v, want the socket length error", err)
	}
}

// TestDevSeedDomains checks the first start's domain files: the quickstart domains load,
// the dev key is media.frontend's key "0", and a second prepare keeps edits and the key.
func TestDevSeedDomains(t *testing.T) {
	l, err := newDevLayout(shortTempDir(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.prepare(); err != nil {
		t.Fatal(err)
	}
	domains, err := policy.LoadDir(l.Domains)
	if err != nil {
		t.Fatalf("seeded domains do not load: %v", err)
	}
	var found bool
	for _, d := range domains {
		for _, s := range d.Services {
			if s.Name != devKeyService {
				continue
			}
			for _, k := range s.PublicKeys {
				pub, err := athenz.DecodePublicKeyEntry(k.Key)
				if err != nil {
					t.Fatal(err)
				}
				key, err := loadOrCreateECKey(l.ServiceKey)
				if err != nil {
					t.Fatal(err)
				}
				found = k.ID == "0" && key.Public().(*ecdsa.PublicKey).Equal(pub)
			}
		}
	}
	if !found {
		t.Fatal("media.frontend has no key 0 matching keys/media.frontend.key.pem")
	}
	if st, err := os.Stat(l.ServiceKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("service key mode: %v, %v", st.Mode(), err)
	}
	edited := filepath.Join(l.Domains, "ops.yaml")
	if err := os.WriteFile(edited, []byte("name: ops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.prepare(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(edited); string(data) != "name: ops\n" {
		t.Fatal("a second start rewrote the user's domain files")
	}
}

func TestAddServiceKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := athenz.EncodePublicKeyEntry(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in string
		wantOK   bool
	}{
		{"service without keys", "name: media\nservices:\n  - name: media.frontend\n", true},
		{"service with a key", "name: media\nservices:\n  - name: media.frontend\n    publicKeys:\n      - {id: \"1\", key: abc}\n", true},
		{"other service", "name: media\nservices:\n  - name: media.other\n", false},
		{"no services", "name: media\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, ok, err := addServiceKey([]byte(tc.in), "media.frontend", "0", entry)
			if err != nil || ok != tc.wantOK {
				t.Fatalf("addServiceKey = %v, %v; want ok %v", ok, err, tc.wantOK)
			}
			if ok != strings.Contains(string(out), entry) {
				t.Fatalf("ok %v but the key is present %v:\n%s", ok, !ok, out)
			}
		})
	}
}

// TestDevDocs keeps docs/dev.md in step with the command: every flag and every port
// with its default.
func TestDevDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/dev.md")
	if err != nil {
		t.Fatal(err)
	}
	newDevCmd().Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(string(doc), "`--"+f.Name+"`") {
			t.Errorf("docs/dev.md does not document --%s", f.Name)
		}
	})
	p := defaultDevPorts
	for i, f := range p.fields() {
		row := fmt.Sprintf("| `%s` | %d |", devPortNames[i], *f)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/dev.md lacks the port row %q", row)
		}
	}
}

// TestDevLogHandler checks what reaches the terminal: warnings, errors and the events a
// user waits for, while the file gets every record at info and above.
func TestDevLogHandler(t *testing.T) {
	tests := []struct {
		name     string
		level    slog.Level
		msg      string
		wantFile bool
		wantTerm bool
	}{
		{"debug is dropped", slog.LevelDebug, "domains reloaded", false, false},
		{"routine info stays in the file", slog.LevelInfo, "listening", true, false},
		{"a reload reaches the terminal", slog.LevelInfo, "domains reloaded", true, true},
		{"a new bundle reaches the terminal", slog.LevelInfo, "policy bundle in force", true, true},
		{"warnings reach the terminal", slog.LevelWarn, "anything", true, true},
		{"errors reach the terminal", slog.LevelError, "domain reload failed", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var file, term strings.Builder
			log := slog.New(devLogHandler(&file, &term)).With("component", "issuer")
			log.Log(context.Background(), tc.level, tc.msg, "n", 1)
			if got := strings.Contains(file.String(), tc.msg); got != tc.wantFile {
				t.Errorf("file got it: %v, want %v (%q)", got, tc.wantFile, file.String())
			}
			if got := strings.Contains(term.String(), tc.msg); got != tc.wantTerm {
				t.Errorf("terminal got it: %v, want %v (%q)", got, tc.wantTerm, term.String())
			}
			if tc.wantTerm && !strings.Contains(term.String(), "component=issuer") {
				t.Errorf("terminal line lacks the component: %q", term.String())
			}
		})
	}
}
