package issuer

import (
	"net/http"
	"strconv"
	"time"
)

// handleBundle is GET /zts/v1/bundle: the OPA bundle compiled from the domains (the
// format of 'athenz-mesh policy compile'), signed with the bundle key, for authz servers
// and OPA. The ETag is the quoted bundle revision; If-None-Match equal to it gives 304.
// With ?wait=<seconds> (capped by listen.max_long_poll) and a current If-None-Match, the
// answer is held until the revision changes (then 200 with the new bundle at once) or the
// wait ends (then 304): a long poll, which authz's bundle.long_poll_wait uses. No
// credentials needed.
func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Bundle.Disabled {
		return notFound("the bundle is not served by this issuer (bundle.disabled)")
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return badRequest("wait %.20q: want a number of seconds", v)
		}
		wait = min(time.Duration(n)*time.Second, s.cfg.Listen.MaxLongPoll)
	}
	inm := ifNoneMatch(r.Header.Get("If-None-Match"))
	changed := s.domains.changedCh()
	snap := s.snap()
	etag := `"` + snap.revision + `"`
	if inm == etag && wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
	poll:
		for {
			select {
			case <-changed:
				changed = s.domains.changedCh()
				snap = s.snap()
				if etag = `"` + snap.revision + `"`; etag != inm {
					break poll
				}
			case <-timer.C:
				break poll
			case <-r.Context().Done():
				return nil
			}
		}
	}
	w.Header().Set("ETag", etag)
	if inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if snap.bundle == nil {
		return internal("building the bundle", nil)
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Length", strconv.Itoa(len(snap.bundle)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(snap.bundle)
	return nil
}
