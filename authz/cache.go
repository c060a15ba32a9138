package authz

import (
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// decisionCache is an LRU of decisions keyed by everything a decision depends on: the
// bundle revision, the principal (or, in token mode, the token domain and its sorted
// roles), the action and the resource. An entry is never served past the earliest member
// expiry the decision depended on (policy.Decision.ValidUntil, and for membership roles
// the earliest expiry among them) nor past maxTTL after it was stored. It is safe for
// concurrent use.
type decisionCache struct {
	lru    *lru.Cache[string, cacheEntry]
	maxTTL time.Duration
}

// cacheEntry is one cached decision.
type cacheEntry struct {
	decision policy.Decision
	// roles is the caller's membership roles, comma-joined, for the roles header (mTLS
	// callers only; token callers' roles come from the token).
	roles string
	// expires is the instant (Unix nanoseconds) after which the entry must not be served.
	expires int64
}

func newDecisionCache(size int, maxTTL time.Duration) (*decisionCache, error) {
	l, err := lru.New[string, cacheEntry](size)
	if err != nil {
		return nil, err
	}
	return &decisionCache{lru: l, maxTTL: maxTTL}, nil
}

// get returns the entry for key when it is still valid at now.
func (c *decisionCache) get(key string, now time.Time) (cacheEntry, bool) {
	e, ok := c.lru.Get(key)
	if !ok {
		return cacheEntry{}, false
	}
	if now.UnixNano() > e.expires {
		c.lru.Remove(key)
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e under key, decided at now, valid until validUntil (zero: until maxTTL).
func (c *decisionCache) put(key string, e cacheEntry, now, validUntil time.Time) {
	e.expires = now.Add(c.maxTTL).UnixNano()
	if !validUntil.IsZero() && validUntil.UnixNano() < e.expires {
		e.expires = validUntil.UnixNano()
	}
	if e.expires < now.UnixNano() {
		return
	}
	c.lru.Add(key, e)
}

// purge drops every entry, when a new bundle makes them unreachable.
func (c *decisionCache) purge() { c.lru.Purge() }

// len is the number of entries, for tests.
func (c *decisionCache) len() int { return c.lru.Len() }

// cacheKey builds the key of r under revision. Fields are separated by NUL and roles by
// 0x01, which no header value carries (Envoy refuses control characters in headers), so
// two different requests never share a key. Token mode leaves the principal out: the
// evaluator ignores it there.
func cacheKey(revision string, r *policy.Request) string {
	var b strings.Builder
	n := len(revision) + len(r.Action) + len(r.Resource) + 8
	if r.TokenDomain != "" {
		n += len(r.TokenDomain)
		for _, role := range r.Roles {
			n += len(role) + 1
		}
	} else {
		n += len(r.Principal)
	}
	b.Grow(n)
	b.WriteString(revision)
	b.WriteByte(0)
	if r.TokenDomain != "" {
		b.WriteString("t\x00")
		b.WriteString(strings.ToLower(r.TokenDomain))
		b.WriteByte(0)
		roles := r.Roles
		if !slices.IsSorted(roles) {
			roles = slices.Clone(roles)
			slices.Sort(roles)
		}
		for i, role := range roles {
			if i > 0 {
				b.WriteByte(1)
			}
			b.WriteString(strings.ToLower(role))
		}
	} else {
		b.WriteString("p\x00")
		b.WriteString(strings.ToLower(r.Principal))
	}
	b.WriteByte(0)
	b.WriteString(strings.ToLower(r.Action))
	b.WriteByte(0)
	b.WriteString(strings.ToLower(r.Resource))
	return b.String()
}
