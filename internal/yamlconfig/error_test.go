package yamlconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestErrorAndLoadFile(t *testing.T) {
	type cfg struct {
		Name string `yaml:"name"`
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, body string
		want       string // the error, "" for none
	}{
		{"valid", "name: x\n", ""},
		{"one problem names the file and kind", "nmae: x\n", ": invalid demo config: line 1: field nmae not found in type yamlconfig.cfg"},
		{"several problems are counted and listed", "nmae: x\nnam: y\n", ": invalid demo config, 2 problems:\n  line 1: field nmae"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.body)
			got, err := LoadFile[cfg](path, "demo")
			if tc.want == "" {
				if err != nil || got.Name != "x" {
					t.Fatalf("LoadFile = %+v, %v", got, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Kind != "demo" {
				t.Fatalf("LoadFile error %v, want an *Error for %s", err, path)
			}
			if !strings.HasPrefix(err.Error(), path+tc.want) {
				t.Errorf("error %q, want it to start with %q", err, path+tc.want)
			}
			if _, err := DecodeReader[cfg](strings.NewReader(tc.body), "demo"); !errors.As(err, &e) || e.File != "" {
				t.Errorf("DecodeReader error %v, want an *Error without a file", err)
			}
		})
	}
	if _, err := LoadFile[cfg](filepath.Join(dir, "missing.yaml"), "demo"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist wrapped", err)
	}
}

func TestCheckLog(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		want          int
	}{{"", "", 0}, {"WARN", "json", 0}, {"loud", "text", 1}, {"info", "xml", 1}, {"loud", "xml", 2}} {
		if got := CheckLog(tc.level, tc.format); len(got) != tc.want {
			t.Errorf("CheckLog(%q, %q) = %q, want %d problems", tc.level, tc.format, got, tc.want)
		}
	}
}
