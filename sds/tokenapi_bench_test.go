package sds

import (
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// BenchmarkTokenAPIHit measures an application's request for a cached access token,
// through the handler (parameter checks, identity, cache lookup, JSON answer), against a
// handler that writes a fixed token: the difference is what the API adds per request.
//
//	go test -run XXX -bench TokenAPIHit -benchmem ./sds/
func BenchmarkTokenAPIHit(b *testing.B) {
	ca, err := sdstest.NewCA("bench root")
	if err != nil {
		b.Fatal(err)
	}
	cache := NewCache()
	leaf, err := ca.Issue(idAPI, spiffeOf(idAPI), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	if err := cache.SetIdentity(idAPI, &Credential{Chain: leaf.Chain, Key: leaf.Key}); err != nil {
		b.Fatal(err)
	}
	if err := cache.SetBundle(&Bundle{Roots: []*x509.Certificate{ca.Cert}}); err != nil {
		b.Fatal(err)
	}
	clock := newTapiFakeClock()
	api, err := NewTokenAPI(TokenAPIConfig{DefaultIdentity: idAPI, AllowedIdentities: []string{idAPI}},
		TokenAPIDeps{Cache: cache, Fetcher: newTapiFetcher(clock), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	api.tokens.clock = clock
	fixed := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"x","token_type":"Bearer","expires_in":3600,"scope":"sports:role.readers"}`)
	})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"api", api.Handler()}, {"fixed", fixed}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4080/v1/token?domain=sports&role=readers", nil)
			req.RemoteAddr = "127.0.0.1:5000"
			first := httptest.NewRecorder()
			bc.h.ServeHTTP(first, req)
			if first.Code != http.StatusOK {
				b.Fatalf("first request: %d %s", first.Code, first.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				bc.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
