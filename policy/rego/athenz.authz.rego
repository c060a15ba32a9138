# Athenz authorization over the compiled domains in data.athenz (see policy.Compiled).
#
# Entry points:
#   data.athenz.authz.allow     boolean, false unless an ALLOW assertion matched and no DENY did
#   data.athenz.authz.decision  {"allow", "reason", "domain" (when the resource names one),
#                                "match" (the assertion that decided, when one did)}
#
# Input: {"principal", "action", "resource", "time" (RFC 3339, optional: now),
#         "roles" (token mode: the credential's short role names), "domain" (token mode:
#         the credential's domain; a non-empty string selects token mode)}.
#
# This is the same function as the native evaluator (policy.Evaluator.Decide); a
# differential test holds them equal. Every step is a key lookup in the compiled indexes;
# regular expressions run only on glob entries.
package athenz.authz

default allow := false

allow if reason == "allowed"

decision := object.union_n([
	{"allow": allow, "reason": reason},
	domain_part,
	match_part,
])

domain_part := {"domain": domain} if {
	is_string(domain)
} else := {}

match_part := {"match": {
	"id": m.id,
	"policy": m.policy,
	"role": m.role,
	"action": m.action,
	"resource": m.resource,
	"effect": m.effect,
}} if {
	m := match
} else := {}

reason := "invalid_request" if {
	invalid
} else := "domain_mismatch" if {
	token_mode
	lower(input.domain) != domain
} else := "unknown_domain" if {
	not known_domain
} else := "denied" if {
	count(deny_ids) > 0
} else := "allowed" if {
	count(allow_ids) > 0
} else := "no_match" if {
	count(held) > 0
} else := "member_expired" if {
	not token_mode
	ever_member
} else := "not_member"

match := matched[min(deny_ids)] if reason == "denied"

match := matched[min(allow_ids)] if reason == "allowed"

# --- the request, normalised --------------------------------------------------------

action := lower(input.action) if is_string(input.action)

resource := lower(input.resource) if is_string(input.resource)

principal := lower(input.principal) if {
	is_string(input.principal)
} else := ""

# domain is the resource's part before its first ":"; undefined when there is none.
domain := substring(resource, 0, i) if {
	i := indexof(resource, ":")
	i > 0
}

token_mode if {
	is_string(input.domain)
	input.domain != ""
}

has_time if {
	input.time != null
	input.time != ""
}

# now is the decision instant in Unix nanoseconds.
now := time.now_ns() if not has_time

now := t if {
	has_time
	is_string(input.time)
	t := time.parse_rfc3339_ns(input.time)
}

invalid if not action

invalid if action == ""

invalid if not domain

invalid if {
	not token_mode
	principal == ""
}

invalid if {
	has_time
	not now
}

invalid if {
	input.domain != null
	not is_string(input.domain)
}

invalid if {
	token_mode
	input.roles != null
	not is_array(input.roles)
}

invalid if {
	token_mode
	is_array(input.roles)
	some r in input.roles
	not is_string(r)
}

# --- roles ---------------------------------------------------------------------------

# The rules below refer to data.athenz.domains[domain] by full paths, never binding a whole
# domain (or a whole action index) to a variable: OPA then reads only the leaves a decision
# needs from its store instead of converting the domain's entire subtree on every query.

# known_domain reads "roles", which the compiler always writes, as the cheapest proof that
# the domain exists.
known_domain if {
	_ := data.athenz.domains[domain].roles
}

member_roles := m if {
	m := data.athenz.domains[domain].members[principal]
	is_object(m)
} else := {}

live(e) if e == 0

live(e) if now <= e

# held is the set of role names the caller holds in the domain at now.
held contains role if {
	token_mode
	some r in input.roles
	role := lower(r)
}

held contains role if {
	not token_mode
	some role, e in member_roles
	live(e)
}

held contains role if {
	not token_mode
	some p in data.athenz.domains[domain].prefixes
	startswith(principal, p.prefix)
	live(p.expires)
	role := p.role
}

# ever_member: the caller has a membership entry in the domain, live or expired.
ever_member if count(member_roles) > 0

ever_member if {
	some p in data.athenz.domains[domain].prefixes
	startswith(principal, p.prefix)
}

# --- assertions ----------------------------------------------------------------------

# matched maps the id of every assertion that matches the request to the assertion.
matched[id] := x if {
	some x in data.athenz.domains[domain].actions[action].exact[resource]
	role_ok(x)
	id := x.id
}

matched[id] := x if {
	some x in data.athenz.domains[domain].actions[action].globs
	glob_ok(x, "resource_re", resource)
	role_ok(x)
	id := x.id
}

matched[id] := x if {
	some x in data.athenz.domains[domain].glob_actions
	glob_ok(x, "action_re", action)
	resource_ok(x)
	role_ok(x)
	id := x.id
}

glob_ok(x, key, value) if {
	re := x[key]
	re != ""
	regex.match(re, value)
}

resource_ok(x) if {
	object.get(x, "resource_re", "") == ""
	x.resource == resource
}

resource_ok(x) if glob_ok(x, "resource_re", resource)

role_ok(x) if {
	object.get(x, "role_re", "") == ""
	held[x.role]
}

role_ok(x) if {
	some h in held
	glob_ok(x, "role_re", h)
}

deny_ids contains id if {
	some id, x in matched
	x.effect == "DENY"
}

allow_ids contains id if {
	some id, x in matched
	x.effect == "ALLOW"
}
