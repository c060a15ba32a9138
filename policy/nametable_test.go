package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestNameTable(t *testing.T) {
	tests := []struct {
		name  string
		names []string
	}{
		{"empty", nil},
		{"one", []string{"sports.api"}},
		{"the empty name", []string{"", "a"}},
		{"prefixes of each other", []string{"a", "ab", "abc", "abcd", "b"}},
		{"enough to grow many times", func() []string {
			var out []string
			for i := range 5000 {
				out = append(out, fmt.Sprintf("user.u%d", i))
			}
			return out
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]uint64{}
			tab := newNameTable(len(tc.names) / 3) // too small on purpose: it must grow
			for i, n := range tc.names {
				tab.set(n, uint64(i))
				want[n] = uint64(i)
			}
			// Replacing a value keeps one entry.
			if len(tc.names) > 0 {
				tab.set(tc.names[0], 99)
				want[tc.names[0]] = 99
			}
			if tab.len() != len(want) {
				t.Fatalf("len %d, want %d", tab.len(), len(want))
			}
			for n, v := range want {
				if got, ok := tab.get(n); !ok || got != v {
					t.Fatalf("get(%q) = %d, %v; want %d", n, got, ok, v)
				}
			}
			for _, absent := range []string{"nobody", "sports.ap", "sports.api.x", "user.u5000"} {
				if _, in := want[absent]; in {
					continue
				}
				if v, ok := tab.get(absent); ok {
					t.Fatalf("get(%q) = %d for a name never set", absent, v)
				}
			}
		})
	}
	var nilTable *nameTable
	if _, ok := nilTable.get("x"); ok {
		t.Fatal("a nil table has a name")
	}
}

// FuzzNameTable compares the table with a Go map over random names and values.
func FuzzNameTable(f *testing.F) {
	f.Add(uint64(1), 100)
	f.Fuzz(func(t *testing.T, seed uint64, n int) {
		n = n%2000 + 1
		if n < 0 {
			n = -n
		}
		r := rand.New(rand.NewPCG(seed, seed))
		tab, want := newNameTable(0), map[string]uint64{}
		for range n {
			name := fmt.Sprintf("d%d.s%d", r.IntN(50), r.IntN(100))
			v := r.Uint64()
			tab.set(name, v)
			want[name] = v
		}
		for name, v := range want {
			if got, ok := tab.get(name); !ok || got != v {
				t.Fatalf("get(%q) = %d, %v; want %d", name, got, ok, v)
			}
		}
		if tab.len() != len(want) {
			t.Fatalf("len %d, want %d", tab.len(), len(want))
		}
	})
}
