package athenz

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLength is the longest name, in bytes, that any validator here accepts. ZMS stores
// each name part (domain, role, service, principal) in a VARCHAR(512) column and limits
// domain names to 128 bytes by default, so a full name such as "domain:role.name" or a
// principal fits well under 1024. The limit exists so that hostile input (a megabyte
// "domain" in a token or a domain file) is refused after one length check, and so that
// error messages and log lines stay bounded.
const MaxNameLength = 1024

// ErrInvalidName is wrapped by every *NameError, so callers can test any validation
// failure with errors.Is(err, ErrInvalidName).
var ErrInvalidName = errors.New("invalid Athenz name")

// NameError says why a string is not a valid Athenz name of a given kind, precisely enough
// for a user to fix it: which byte, at which position, broke which rule.
type NameError struct {
	// Kind is the kind of name that was expected, e.g. "domain name".
	Kind string
	// Name is the rejected input. Inputs longer than MaxNameLength are shortened.
	Name string
	// Pos is the 0-based byte offset of the first offending byte, or -1 when the problem
	// is not at one place (an empty or over-long name).
	Pos int
	// Reason is the rule that was broken, e.g. "invalid character ' ' at position 2".
	Reason string
}

// Error formats the problem as `domain name "sp orts": invalid character ' ' at position 2`.
func (e *NameError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Kind, e.Name, e.Reason)
}

// Unwrap returns ErrInvalidName.
func (e *NameError) Unwrap() error { return ErrInvalidName }

// fault is the kind of rule a name broke. The scanners return a fault and a position, not
// an error, so the Is* functions never allocate.
type fault uint8

const (
	faultNone      fault = iota
	faultEmpty           // the whole name is empty
	faultTooLong         // longer than MaxNameLength
	faultChar            // a byte outside the allowed set
	faultPartStart       // '-' starts a dot-separated part
	faultEmptyPart       // '.' with nothing before it in its part
	faultDotEnd          // '.' with nothing after it
	faultMissing         // a required segment (domain, entity, ...) is empty
	faultWildcard        // '*' anywhere but the end of a member name
	faultGroupTag        // ":group." expected
)

// problem is a scanner result: faultNone means the name is valid. part names the missing
// segment for faultMissing.
type problem struct {
	f    fault
	pos  int
	part string
}

// nameByte marks the bytes of SimpleName other than '-': [a-zA-Z0-9_].
var nameByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'] = true
	return t
}()

// checkLength rejects empty and over-long names before any scanning.
func checkLength(s string) problem {
	switch {
	case s == "":
		return problem{f: faultEmpty, pos: -1}
	case len(s) > MaxNameLength:
		return problem{f: faultTooLong, pos: -1}
	}
	return problem{}
}

// scanSimple checks that s[from:to] is a SimpleName, [a-zA-Z0-9_][a-zA-Z0-9_-]*.
func scanSimple(s string, from, to int, part string) problem {
	if from == to {
		return problem{f: faultMissing, pos: from, part: part}
	}
	for i := from; i < to; i++ {
		c := s[i]
		if nameByte[c] {
			continue
		}
		if c == '-' {
			if i == from {
				return problem{f: faultPartStart, pos: i}
			}
			continue
		}
		return problem{f: faultChar, pos: i}
	}
	return problem{}
}

// scanCompound checks that s[from:to] is a CompoundName, ({SimpleName}\.)*{SimpleName}.
// Positions are reported relative to the whole of s.
func scanCompound(s string, from, to int, part string) problem {
	if from == to {
		return problem{f: faultMissing, pos: from, part: part}
	}
	start := from // first byte of the current dot-separated part
	for i := from; i < to; i++ {
		c := s[i]
		switch {
		case nameByte[c]:
		case c == '-':
			if i == start {
				return problem{f: faultPartStart, pos: i}
			}
		case c == '.':
			if i == start {
				return problem{f: faultEmptyPart, pos: i}
			}
			start = i + 1
		default:
			return problem{f: faultChar, pos: i}
		}
	}
	if start == to {
		return problem{f: faultDotEnd, pos: to - 1}
	}
	return problem{}
}

func simpleName(s string) problem {
	if p := checkLength(s); p.f != faultNone {
		return p
	}
	return scanSimple(s, 0, len(s), "name")
}

func compoundName(s string) problem {
	if p := checkLength(s); p.f != faultNone {
		return p
	}
	return scanCompound(s, 0, len(s), "name")
}

// resourceName checks {DomainName}(:{EntityName})?. Note that "domain:" does not match:
// the RDL comment says a trailing colon is fine, but the pattern, which is what every RDL
// validator runs, does not allow it.
func resourceName(s string) problem {
	if p := checkLength(s); p.f != faultNone {
		return p
	}
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return scanCompound(s, 0, len(s), "domain")
	}
	if p := scanCompound(s, 0, colon, "domain"); p.f != faultNone {
		return p
	}
	return scanCompound(s, colon+1, len(s), "entity")
}

// groupTag separates the domain from the group in a GroupName.
const groupTag = ":group."

// groupName checks {DomainName}:group\.{EntityName}.
func groupName(s string) problem {
	if p := checkLength(s); p.f != faultNone {
		return p
	}
	end := strings.IndexByte(s, ':')
	if end < 0 {
		end = len(s)
	}
	if p := scanCompound(s, 0, end, "domain"); p.f != faultNone {
		return p
	}
	if !strings.HasPrefix(s[end:], groupTag) {
		return problem{f: faultGroupTag, pos: end}
	}
	return scanCompound(s, end+len(groupTag), len(s), "group")
}

// memberName checks \*|{DomainName}\.\*|{ServiceName}(\*)?|{GroupName}, anchored as a
// whole (the Go RDL validator anchors only the first and last alternatives; the Java
// server anchors all of them, and so do we).
func memberName(s string) problem {
	if s == "*" {
		return problem{}
	}
	if p := checkLength(s); p.f != faultNone {
		return p
	}
	var p problem
	switch {
	case strings.IndexByte(s, ':') >= 0:
		p = groupName(s)
	case strings.HasSuffix(s, ".*"):
		p = scanCompound(s, 0, len(s)-2, "domain")
	case strings.HasSuffix(s, "*"):
		p = scanCompound(s, 0, len(s)-1, "service")
	default:
		p = scanCompound(s, 0, len(s), "service")
	}
	if p.f == faultChar && s[p.pos] == '*' {
		p.f = faultWildcard
	}
	return p
}

// nameError turns a scanner problem into the error a user sees.
func nameError(kind, s string, p problem) error {
	if p.f == faultNone {
		return nil
	}
	e := &NameError{Kind: kind, Name: s, Pos: p.pos}
	switch p.f {
	case faultEmpty:
		e.Reason = "must not be empty"
	case faultTooLong:
		e.Name = s[:64] + "..."
		e.Reason = fmt.Sprintf("is %d bytes long, more than the limit of %d", len(s), MaxNameLength)
	case faultChar:
		e.Reason = fmt.Sprintf("invalid character %s at position %d", describeByte(s, p.pos), p.pos)
	case faultPartStart:
		e.Reason = fmt.Sprintf("'-' at position %d cannot start a name part (a part starts with a letter, digit or '_')", p.pos)
	case faultEmptyPart:
		e.Reason = fmt.Sprintf("'.' at position %d follows nothing (empty name part)", p.pos)
	case faultDotEnd:
		e.Reason = fmt.Sprintf("'.' at position %d is not followed by a name part", p.pos)
	case faultMissing:
		e.Reason = fmt.Sprintf("empty %s at position %d", p.part, p.pos)
	case faultWildcard:
		e.Reason = fmt.Sprintf("'*' at position %d: a wildcard may only end a member name", p.pos)
	case faultGroupTag:
		e.Reason = fmt.Sprintf("want %q at position %d", groupTag, p.pos)
	}
	return e
}

// describeByte quotes the character starting at s[i] for an error message, or names the
// byte when it does not start valid UTF-8.
func describeByte(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", s[i])
	}
	return fmt.Sprintf("%q", r)
}

// ValidateSimpleName checks s against the RDL SimpleName pattern [a-zA-Z0-9_][a-zA-Z0-9_-]*
// (one part of a dotted name, e.g. a role or group short name). The error is a *NameError.
func ValidateSimpleName(s string) error { return nameError("simple name", s, simpleName(s)) }

// IsSimpleName reports whether ValidateSimpleName accepts s, without allocating.
func IsSimpleName(s string) bool { return simpleName(s).f == faultNone }

// ValidateCompoundName checks s against the RDL CompoundName pattern
// ({SimpleName}\.)*{SimpleName}. The error is a *NameError.
func ValidateCompoundName(s string) error {
	return nameError("compound name", s, compoundName(s))
}

// IsCompoundName reports whether ValidateCompoundName accepts s, without allocating.
func IsCompoundName(s string) bool { return compoundName(s).f == faultNone }

// ValidateDomainName checks s against the RDL DomainName pattern (a CompoundName such as
// "sports.prod"). The error is a *NameError.
func ValidateDomainName(s string) error { return nameError("domain name", s, compoundName(s)) }

// IsDomainName reports whether ValidateDomainName accepts s, without allocating.
func IsDomainName(s string) bool { return compoundName(s).f == faultNone }

// ValidateServiceName checks s against the RDL ServiceName pattern (a CompoundName). It
// applies to the service part of a principal and to full principals alike, since both are
// dotted names. The error is a *NameError.
func ValidateServiceName(s string) error {
	return nameError("service name", s, compoundName(s))
}

// IsServiceName reports whether ValidateServiceName accepts s, without allocating.
func IsServiceName(s string) bool { return compoundName(s).f == faultNone }

// ValidateEntityName checks s against the RDL EntityName pattern (a CompoundName), the
// part of a resource name after the colon. The error is a *NameError.
func ValidateEntityName(s string) error { return nameError("entity name", s, compoundName(s)) }

// IsEntityName reports whether ValidateEntityName accepts s, without allocating.
func IsEntityName(s string) bool { return compoundName(s).f == faultNone }

// ValidateResourceName checks s against the RDL ResourceName pattern
// {DomainName}(:{EntityName})?, e.g. "sports:role.readers" or "sports". A trailing colon
// ("sports:") is refused, as the pattern refuses it. The error is a *NameError.
func ValidateResourceName(s string) error {
	return nameError("resource name", s, resourceName(s))
}

// IsResourceName reports whether ValidateResourceName accepts s, without allocating.
func IsResourceName(s string) bool { return resourceName(s).f == faultNone }

// ValidateGroupName checks s against the RDL GroupName pattern
// {DomainName}:group\.{EntityName}, e.g. "sports:group.admins". The error is a *NameError.
func ValidateGroupName(s string) error { return nameError("group name", s, groupName(s)) }

// IsGroupName reports whether ValidateGroupName accepts s, without allocating.
func IsGroupName(s string) bool { return groupName(s).f == faultNone }

// ValidateMemberName checks s against the RDL MemberName pattern: "*" (everyone),
// "domain.*" (every principal of a domain), a principal optionally ending in "*" (a prefix
// wildcard such as "sports.api*"), or a group name. The whole string must match one
// alternative. The error is a *NameError.
func ValidateMemberName(s string) error { return nameError("member name", s, memberName(s)) }

// IsMemberName reports whether ValidateMemberName accepts s, without allocating.
func IsMemberName(s string) bool { return memberName(s).f == faultNone }

// ValidateGroupMemberName checks s against the RDL GroupMemberName pattern (a
// CompoundName: group members are principals, never wildcards or other groups). The error
// is a *NameError.
func ValidateGroupMemberName(s string) error {
	return nameError("group member name", s, compoundName(s))
}

// IsGroupMemberName reports whether ValidateGroupMemberName accepts s, without allocating.
func IsGroupMemberName(s string) bool { return compoundName(s).f == faultNone }
