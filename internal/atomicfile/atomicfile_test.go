package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		old     string // "" for no file
		write   func(io.Writer) error
		mode    fs.FileMode
		want    string
		wantErr bool
	}{
		{"new file", "", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, 0o600, "new", false},
		{"replaces", "old", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, 0o644, "new", false},
		{"a failed write keeps the old content", "old", func(w io.Writer) error { _, _ = io.WriteString(w, "ne"); return boom }, 0o600, "old", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.pem")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFunc(path, tc.mode, tc.write)
			if (err != nil) != tc.wantErr {
				t.Fatalf("WriteFunc = %v, want error %v", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil || string(got) != tc.want {
				t.Fatalf("content %q, %v; want %q", got, rerr, tc.want)
			}
			if st, _ := os.Stat(path); !tc.wantErr && st.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.mode)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("%d files left in the directory, want 1 (no temporary file)", len(entries))
			}
		})
	}
	// Write is WriteFunc with the bytes.
	path := filepath.Join(t.TempDir(), "k")
	if err := Write(path, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "key" {
		t.Fatalf("Write wrote %q", got)
	}
}
