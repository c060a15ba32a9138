package athenz_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// The RDL patterns of core/zms/src/main/rdl/Names.tdl, expanded the way the RDL compiler
// expands {Type} references, and anchored around the whole alternation (as the Java
// server's full-string match does).
const (
	rdlSimple   = `[a-zA-Z0-9_][a-zA-Z0-9_-]*`
	rdlCompound = `(` + rdlSimple + `\.)*` + rdlSimple
	rdlDomain   = rdlCompound
	rdlService  = rdlCompound
	rdlEntity   = rdlCompound
	rdlResource = rdlDomain + `(:` + rdlEntity + `)?`
	rdlGroup    = rdlDomain + `:group\.` + rdlEntity
	rdlMember   = `\*|` + rdlDomain + `\.\*|` + rdlService + `(\*)?|` + rdlGroup
)

func anchored(pattern string) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + pattern + `)$`)
}

// referenceNames maps each validator (by the keys of validators) to its RDL regexp.
var referenceNames = map[string]*regexp.Regexp{
	"simple":      anchored(rdlSimple),
	"compound":    anchored(rdlCompound),
	"domain":      anchored(rdlDomain),
	"service":     anchored(rdlService),
	"entity":      anchored(rdlEntity),
	"resource":    anchored(rdlResource),
	"group":       anchored(rdlGroup),
	"member":      anchored(rdlMember),
	"groupMember": anchored(rdlCompound),
}

// FuzzNameValidators checks every hand-written scanner against the RDL regexp: the same
// verdict for every input up to MaxNameLength, refusal beyond it, Is and Validate agreeing,
// and error positions that point inside the input.
func FuzzNameValidators(f *testing.F) {
	for _, s := range []string{
		"", "*", "**", ".*", "a.*", "a*", "a.b*", "sports", "sports.api", "a..b", "a.", ".a",
		"-a", "a-", "a.-b", "_", "a:b", "a:", ":b", "a:b:c", "a:group.b", "a:group.", "a:group",
		"a:role.b", "a.b:group.c.d", "sp orts", "caf\u00e9", "a\xff", "a*b", "a:group.b*",
		"user.joe*", "x.*.y", "*.a", strings.Repeat("a.", 600) + "a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for kind, v := range validators {
			err := v.validate(s)
			if v.is(s) != (err == nil) {
				t.Fatalf("%s %q: Is and Validate disagree (err %v)", kind, s, err)
			}
			want := len(s) <= athenz.MaxNameLength && referenceNames[kind].MatchString(s)
			if (err == nil) != want {
				t.Fatalf("%s %q: validator says %v, RDL regexp says valid=%v", kind, s, err, want)
			}
			var ne *athenz.NameError
			if err == nil {
				continue
			}
			if !errors.As(err, &ne) {
				t.Fatalf("%s %q: error %T is not a *NameError", kind, s, err)
			}
			if ne.Pos < -1 || ne.Pos > len(s) {
				t.Fatalf("%s %q: position %d outside the input", kind, s, ne.Pos)
			}
			if ne.Pos >= 0 && !strings.Contains(ne.Reason, "position "+strconv.Itoa(ne.Pos)) {
				t.Fatalf("%s %q: reason %q does not name position %d", kind, s, ne.Reason, ne.Pos)
			}
		}
	})
}
