package sds

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Backoff of the token cache after an issuer failure: 1 s, 2 s, 4 s ... up to 30 s per
// token key, each wait shortened at random by up to a quarter (tapiJitter).
const (
	tapiBackoffBase = time.Second
	tapiBackoffMax  = 30 * time.Second
)

// tapiFailure is a remembered failed fetch of one token key. It is immutable once stored.
type tapiFailure struct {
	// answer is what the failed fetch was answered with (status and message); every
	// request inside the window gets it again, with Retry-After.
	answer *tapiError
	// certDigest is the identity's certificate when the fetch failed: a failure under an
	// older certificate does not count (the refusal may have been about that certificate).
	certDigest string
	// until is when the window ends and the next fetch may be made.
	until time.Time
	// streak counts consecutive transient failures (issuer down, timeout, 429); it is 0
	// for a refusal, which the issuer answered deliberately.
	streak int
}

// transient reports whether the failure was the issuer's trouble, not a refusal: a still
// valid token may then be served instead.
func (f *tapiFailure) transient() bool { return f.streak > 0 }

// reply is the answer for a request at now: the remembered one, and when to retry.
func (f *tapiFailure) reply(now time.Time) *tapiError {
	a := *f.answer
	a.retryAfter = max(f.until.Sub(now), time.Nanosecond)
	return &a
}

// tapiFailures is the token cache's negative cache: per token key, the last failed fetch
// while its window is open (NegativeTTL for refusals, a growing backoff for transient
// failures). It is bounded (least recently used evicted) and safe for concurrent use.
type tapiFailures struct {
	ttl time.Duration
	// jitter shortens a backoff; tests make it the identity.
	jitter func(time.Duration) time.Duration

	mu  sync.Mutex
	lru *simplelru.LRU[tapiKey, *tapiFailure]
}

func newTapiFailures(size int, ttl time.Duration) (*tapiFailures, error) {
	l, err := simplelru.NewLRU[tapiKey, *tapiFailure](size, nil)
	if err != nil {
		return nil, err
	}
	return &tapiFailures{ttl: ttl, jitter: tapiJitter, lru: l}, nil
}

// active returns k's failure if its window is open at now for the identity's current
// certificate (digest), nil otherwise.
func (f *tapiFailures) active(k tapiKey, digest string, now time.Time) *tapiFailure {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.lru.Get(k)
	if !ok || v.certDigest != digest || !now.Before(v.until) {
		return nil
	}
	return v
}

// record remembers a failed fetch of k that ended at now and returns it, or returns nil
// when the answer is not the issuer's (the identity has no certificate, the agent is
// stopping, a fetcher bug): those are not remembered. Callers serialize record per key
// (the fetch of a key is single-flight), so the streak counts every failure once.
func (f *tapiFailures) record(k tapiKey, digest string, answer *tapiError, now time.Time) *tapiFailure {
	v := &tapiFailure{answer: answer, certDigest: digest}
	switch answer.status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		v.until = now.Add(f.ttl)
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
		v.streak = 1
	default:
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v.streak > 0 {
		if prev, ok := f.lru.Peek(k); ok && prev.certDigest == digest && prev.streak > 0 {
			v.streak = prev.streak + 1
		}
		v.until = now.Add(f.jitter(tapiBackoff(v.streak)))
	}
	f.lru.Add(k, v)
	return v
}

// clear forgets k's failure: a fetch succeeded.
func (f *tapiFailures) clear(k tapiKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lru.Remove(k)
}

// prune drops the failures of identities that left the cache (digest reports false) or
// whose certificate rotated since, refusals whose window ended, and transient failures
// whose window ended more than keep ago (a key not fetched for that long starts a new
// streak).
func (f *tapiFailures) prune(now time.Time, keep time.Duration, digest func(identity string) (string, bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.lru.Keys() {
		v, _ := f.lru.Peek(k)
		d, ok := digest(k.identity)
		over := !now.Before(v.until) && !v.transient() // a refusal's window ended
		if !ok || d != v.certDigest || over || now.Sub(v.until) > keep {
			f.lru.Remove(k)
		}
	}
}

// Len is the number of remembered failures.
func (f *tapiFailures) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lru.Len()
}

// tapiBackoff is the wait after the streak-th consecutive transient failure: the base
// doubled streak-1 times, at most tapiBackoffMax.
func tapiBackoff(streak int) time.Duration {
	d := tapiBackoffBase
	for i := 1; i < streak && d < tapiBackoffMax; i++ {
		d *= 2
	}
	return min(d, tapiBackoffMax)
}

// tapiJitter shortens d at random by up to a quarter, so that the agents of a fleet that
// saw the issuer fail together do not all retry together. It never lengthens d: the
// backoff cap stays a cap.
func tapiJitter(d time.Duration) time.Duration {
	if d < 4 {
		return d
	}
	return d - rand.N(d/4)
}

// tapiTransient reports whether err is the answer to a transient issuer failure (issuer
// down or failing, timeout, rate limit), for which a still valid cached token is served
// rather than the error.
func tapiTransient(err error) bool {
	var te *tapiError
	if !errors.As(err, &te) {
		return false
	}
	switch te.status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	}
	return false
}
