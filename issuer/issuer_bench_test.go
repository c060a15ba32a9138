package issuer_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

// benchServer is an issuer whose handler is driven in process: no TLS, no sockets, but
// every other step of a request (n-token check, CSR parse and checks, signing, the SQLite
// record, the audit line to a JSON logger, the metrics).
func benchServer(b *testing.B) *issuer.Server {
	b.Helper()
	dataDir, domainsDir := b.TempDir(), b.TempDir()
	for _, d := range testDomains(b) {
		writeDomain(b, domainsDir, d)
	}
	st, err := store.Open(context.Background(), store.Config{DataDir: dataDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := issuer.New(issuer.Config{
		Listen: issuer.ListenConfig{Metrics: issuer.ListenOff}, DataDir: dataDir,
		CA: issuer.CAConfig{Create: true}, Domains: issuer.DomainsConfig{Dir: domainsDir},
	}, issuer.Deps{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// BenchmarkIssueServiceCert issues service certificates through POST
// /instance/{domain}/{service}/refresh with an n-token (zts-svccert's path), each
// recorded in SQLite, from all cores.
func BenchmarkIssueServiceCert(b *testing.B) {
	for _, tc := range []struct{ name, principal string }{{"P256", "sports.api"}, {"RSA2048", "sports.rsa"}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := benchServer(b)
			h := srv.Handler()
			key := serviceKey(tc.principal)
			_, svc, _ := strings.Cut(tc.principal, ".")
			body, _ := json.Marshal(issuer.InstanceRefreshRequest{CSR: serviceCSR(b, key, "sports", svc, "", "")})
			tok := ntoken(b, tc.principal, key, "0", time.Now(), time.Hour)
			b.ReportAllocs()
			// A server has many requests in flight; the store commits their records in
			// groups, one fsync per group.
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/zts/v1/instance/sports/"+svc+"/refresh", strings.NewReader(string(body)))
					req.Header.Set(issuer.DefaultNTokenHeader, tok)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("%d %s", w.Code, w.Body)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
		})
	}
}

// BenchmarkAccessToken mints access tokens through POST /oauth2/token with an n-token.
func BenchmarkAccessToken(b *testing.B) {
	srv := benchServer(b)
	h := srv.Handler()
	tok := ntoken(b, "sports.ops", serviceKey("sports.ops"), "0", time.Now(), time.Hour)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"sports:domain"}}.Encode()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/zts/v1/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(issuer.DefaultNTokenHeader, tok)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
