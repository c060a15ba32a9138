package policy

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// hasGlob reports whether s contains an Athenz glob character.
func hasGlob(s string) bool {
	return strings.ContainsAny(s, "*?")
}

// matchGlob reports whether s matches the Athenz glob pattern p, anchored at both ends:
// '*' matches any run of characters (including '.' and ':'), '?' exactly one character,
// everything else itself. It runs in O(len(p)·len(s)) worst case without allocating, and
// agrees with the regular expression globRegexp(p) (a fuzz test holds them equal).
func matchGlob(p, s string) bool {
	px, sx := 0, 0
	starPx, starSx := -1, -1
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, w := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += w
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last star swallow one more character, if there is one.
		if starPx >= 0 && starSx < len(s) {
			_, w := utf8.DecodeRuneInString(s[starSx:])
			starSx += w
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}

// globRegexp returns the anchored RE2 expression equivalent to the glob p, for Rego's
// regex.match. Every character other than '*' and '?' is quoted.
func globRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^(?s:")
	for len(p) > 0 {
		i := strings.IndexAny(p, "*?")
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(p))
			break
		}
		b.WriteString(regexp.QuoteMeta(p[:i]))
		if p[i] == '*' {
			b.WriteString(".*")
		} else {
			b.WriteString(".")
		}
		p = p[i+1:]
	}
	b.WriteString(")$")
	return b.String()
}
