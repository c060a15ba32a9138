package policy

import (
	"regexp"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		input   string
		want    bool
	}{
		{"literal equal", "read", "read", true},
		{"literal differs", "read", "reads", false},
		{"empty matches empty", "", "", true},
		{"empty pattern vs text", "", "a", false},
		{"star matches all", "*", "sports:api/v1", true},
		{"star matches empty", "*", "", true},
		{"star crosses dots and colons", "sports:*", "sports:a.b:c", true},
		{"trailing star prefix", "sports:api/*", "sports:api/", true},
		{"trailing star wrong prefix", "sports:api/*", "sports:apx/v1", false},
		{"leading star suffix", "*.json", "sports:a/b.json", true},
		{"inner star", "sports:*/scores", "sports:v1/x/scores", true},
		{"inner star no match", "sports:*/scores", "sports:v1/x/score", false},
		{"question one char", "r?ad", "read", true},
		{"question needs a char", "read?", "read", false},
		{"question multibyte rune", "caf?", "café", true},
		{"backtracking", "a*b*c", "aXbYbZc", true},
		{"backtracking fails", "a*b*c", "aXbYbZ", false},
		{"regex metachar literal dot", "a.c", "abc", false},
		{"regex metachar literal plus", "a+", "aa", false},
		{"regex metachar brackets", "[ab]", "[ab]", true},
		{"regex metachar brackets no class", "[ab]", "a", false},
		{"backslash literal", `a\*`, `a\xyz`, true},
		{"double star", "**", "anything", true},
		{"star then question", "*?", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchGlob(tt.pattern, tt.input); got != tt.want {
				t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.pattern, tt.input, got, tt.want)
			}
			re := regexp.MustCompile(globRegexp(tt.pattern))
			if got := re.MatchString(tt.input); got != tt.want {
				t.Errorf("regexp %s on %q = %v, want %v", re, tt.input, got, tt.want)
			}
		})
	}
}

// FuzzGlobAgreesWithRegexp holds the native matcher equal to the regular expression that
// the Rego policy uses, so that both evaluators match globs the same way.
func FuzzGlobAgreesWithRegexp(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*", "")
	f.Add("?é*", "xé")
	f.Add("[(.+)]*", "[(.+)]zz")
	f.Fuzz(func(t *testing.T, pattern, input string) {
		re, err := regexp.Compile(globRegexp(pattern))
		if err != nil {
			return // invalid UTF-8 in the pattern: the loader refuses such names
		}
		if got, want := matchGlob(pattern, input), re.MatchString(input); got != want {
			t.Fatalf("matchGlob(%q, %q) = %v, regexp %s says %v", pattern, input, got, re, want)
		}
	})
}

func BenchmarkMatchGlob(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		matchGlob("sports:api/*/scores/*", "sports:api/v1/scores/2026")
	}
}
