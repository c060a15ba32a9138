package issuer

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/athenz-mesh/athenz-mesh/attestor"
)

// Bounds of the Istio CA API's negative cache of refused tokens.
const (
	// istioRefusalTTL is how long a refused token is answered from the cache.
	istioRefusalTTL = 10 * time.Second
	// istioRefusalEntries bounds the tokens remembered (least recently used evicted).
	istioRefusalEntries = 4096
)

// tokenRefusals remembers, for a short while, the tokens a cluster's verifier refused,
// so that unauthenticated callers repeating a bad token (a flood, or a broken client
// retrying) cost one verification, not one TokenReview call each. Entries are keyed by a
// SHA-256 of the cluster and the token: the token itself is never kept. Only refusals of
// the token are remembered; a verifier that could not answer (attestor.ReasonUnavailable)
// is asked again. Safe for concurrent use.
type tokenRefusals struct {
	mu  sync.Mutex
	lru *simplelru.LRU[[sha256.Size]byte, tokenRefusal]
}

type tokenRefusal struct {
	err   *istioError
	until time.Time
}

func newTokenRefusals() *tokenRefusals {
	l, err := simplelru.NewLRU[[sha256.Size]byte, tokenRefusal](istioRefusalEntries, nil)
	if err != nil { // only for a size ≤ 0
		panic(err)
	}
	return &tokenRefusals{lru: l}
}

func refusalKey(cluster, token string) [sha256.Size]byte {
	return sha256.Sum256([]byte(cluster + "\x00" + token))
}

// get returns the cached refusal of token for cluster, if it has not expired at now.
func (r *tokenRefusals) get(cluster, token string, now time.Time) (*istioError, bool) {
	k := refusalKey(cluster, token)
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.lru.Get(k)
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) {
		r.lru.Remove(k)
		return nil, false
	}
	return e.err, true
}

// add remembers a refusal of token for cluster from now, unless it says the verifier
// could not answer.
func (r *tokenRefusals) add(cluster, token string, ie *istioError, reason attestor.Reason, now time.Time) {
	if reason == attestor.ReasonUnavailable {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lru.Add(refusalKey(cluster, token), tokenRefusal{err: ie, until: now.Add(istioRefusalTTL)})
}
