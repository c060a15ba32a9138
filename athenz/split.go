package athenz

import "strings"

// The splitters below are structural: they cut a full name at its separator and report
// whether both sides are non-empty, but they do not validate either side, because callers
// also split glob patterns ("*:role.readers") and names they validate separately. A domain
// name never contains ':', so every splitter cuts at the first colon.

// Tags that separate a domain from a short name in full role, group and policy names.
const (
	roleTag   = "role."
	policyTag = "policy."
)

// splitTagged cuts "domain:<tag>name" into domain and name.
func splitTagged(s, tag string) (domain, name string, ok bool) {
	domain, rest, found := strings.Cut(s, ":")
	if !found || domain == "" {
		return "", "", false
	}
	name, found = strings.CutPrefix(rest, tag)
	if !found || name == "" {
		return "", "", false
	}
	return domain, name, true
}

// SplitRoleName cuts a full role name "domain:role.name" into "domain" and "name". ok is
// false, and both results empty, unless s has that shape with both parts non-empty.
func SplitRoleName(s string) (domain, role string, ok bool) {
	return splitTagged(s, roleTag)
}

// SplitGroupName cuts a full group name "domain:group.name" into "domain" and "name". ok
// is false, and both results empty, unless s has that shape with both parts non-empty.
func SplitGroupName(s string) (domain, group string, ok bool) {
	return splitTagged(s, groupTag[1:])
}

// SplitPolicyName cuts a full policy name "domain:policy.name" into "domain" and "name".
// ok is false, and both results empty, unless s has that shape with both parts non-empty.
func SplitPolicyName(s string) (domain, policy string, ok bool) {
	return splitTagged(s, policyTag)
}

// SplitResource cuts a resource "domain:entity" at its first colon, as ZPE and
// athenz-authorizer do; the entity keeps any further colons. ok is false, and both results
// empty, when there is no colon or either side is empty.
func SplitResource(s string) (domain, entity string, ok bool) {
	domain, entity, found := strings.Cut(s, ":")
	if !found || domain == "" || entity == "" {
		return "", "", false
	}
	return domain, entity, true
}

// SplitPrincipal cuts a service principal "a.b.svc" at its last dot into the domain
// ("a.b") and the service ("svc"), the reading Athenz gives to certificate CNs and n-token
// names. ok is false, and both results empty, when there is no dot or either side is empty.
func SplitPrincipal(s string) (domain, service string, ok bool) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// JoinRoleName returns the full role name "domain:role.role".
func JoinRoleName(domain, role string) string { return domain + ":" + roleTag + role }

// JoinGroupName returns the full group name "domain:group.group".
func JoinGroupName(domain, group string) string { return domain + groupTag + group }

// JoinPolicyName returns the full policy name "domain:policy.policy".
func JoinPolicyName(domain, policy string) string { return domain + ":" + policyTag + policy }

// DomainToDNS returns the DNS label form of a domain used in certificate SANs
// (<service>.<domain-dashed>.<suffix>): every '.' becomes '-', everything else is kept,
// including upper case and '_' (the server lower-cases names on input). The mapping is not
// one to one ("a-b.c" and "a.b-c" both give "a-b-c"), so a DNS SAN alone must never be
// taken as proof of a domain; authorize on the CN or SPIFFE URI instead.
func DomainToDNS(domain string) string { return strings.ReplaceAll(domain, ".", "-") }
