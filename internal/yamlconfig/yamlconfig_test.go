package yamlconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Name    string        `yaml:"name"`
	Count   int           `yaml:"count"`
	Timeout time.Duration `yaml:"timeout"`
	Inner   struct {
		Flag bool `yaml:"flag"`
	} `yaml:"inner"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want testConfig
		// problems are substrings, one per problem expected, in order.
		problems []string
	}{
		{name: "valid", yaml: "name: a\ncount: 2\ntimeout: 3s\ninner: {flag: true}\n",
			want: testConfig{Name: "a", Count: 2, Timeout: 3 * time.Second, Inner: struct {
				Flag bool `yaml:"flag"`
			}{Flag: true}}},
		{name: "empty document", yaml: ""},
		{name: "comment only", yaml: "# nothing here\n"},
		{name: "unknown key", yaml: "name: a\nnmae: b\n",
			problems: []string{"line 2: field nmae not found"}},
		{name: "unknown nested key", yaml: "inner:\n  flg: true\n",
			problems: []string{"line 2: field flg not found"}},
		{name: "every wrong type", yaml: "count: many\ntimeout: soon\n",
			problems: []string{"line 1: cannot unmarshal", "line 2: cannot unmarshal"}},
		{name: "second document", yaml: "name: a\n---\nname: b\n",
			problems: []string{"line 2: a second YAML document; the config is one document"}},
		{name: "syntax error", yaml: "name: [a\n",
			problems: []string{"yaml:"}},
		{name: "not a mapping", yaml: "- a\n- b\n",
			problems: []string{"line 1: cannot unmarshal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got testConfig
			problems := Decode(strings.NewReader(tc.yaml), &got)
			if len(problems) != len(tc.problems) {
				t.Fatalf("Decode problems = %q, want %d matching %q", problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], want)
				}
			}
			if tc.problems == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		path     string
		want     testConfig
		problems []string
		err      error
	}{
		{name: "valid", path: write("ok.yaml", "name: a\ncount: 2\n"), want: testConfig{Name: "a", Count: 2}},
		{name: "problems", path: write("bad.yaml", "name: a\nextra: 1\n"), problems: []string{"line 2: field extra not found"}},
		{name: "missing file", path: filepath.Join(dir, "missing.yaml"), err: fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got testConfig
			problems, err := Load(tc.path, &got)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Load error = %v, want %v", err, tc.err)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("Load problems = %q, want %q", problems, tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], want)
				}
			}
			if tc.err == nil && tc.problems == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Load = %+v, want %+v", got, tc.want)
			}
		})
	}
}
