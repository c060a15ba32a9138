package evidence

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := strings.Repeat("x", 10)
	for name, tc := range map[string]struct {
		content string
		ok      bool
	}{
		"exact":                     {tok, true},
		"surrounded by white space": {"\r\n  " + tok + "\n\n", true},
		"too long":                  {tok + "x", false},
		"white space beyond slack":  {tok + strings.Repeat(" ", whiteSpaceSlack+1), false},
		"only white space":          {" \n\t", false},
	} {
		s := Source{File: write(name, tc.content), MaxLen: len(tok)}
		got, err := s.Read("test token")
		if tc.ok != (err == nil) || (tc.ok && got != tok) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error quotes the token: %v", name, err)
		}
	}
}

func TestDiscard(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	for _, a := range []attestor.AfterUse{"", attestor.AfterUseKeep, attestor.AfterUseTruncate, attestor.AfterUseRemove} {
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := (Source{File: p, AfterUse: a}).Discard(); err != nil {
			t.Fatalf("%q: %v", a, err)
		}
		b, err := os.ReadFile(p)
		switch a {
		case attestor.AfterUseRemove:
			if !os.IsNotExist(err) {
				t.Errorf("remove: %q, %v", b, err)
			}
		case attestor.AfterUseTruncate:
			if err != nil || len(b) != 0 {
				t.Errorf("truncate: %q, %v", b, err)
			}
		default:
			if string(b) != "secret" {
				t.Errorf("%q: %q, %v", a, b, err)
			}
		}
	}
}
