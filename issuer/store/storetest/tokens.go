package storetest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

func singleUseCases() []testCase {
	return []testCase{
		{"second use is refused", func(t *testing.T, s store.Store, _ *Clock) {
			exp := t0.Add(30 * time.Minute)
			wantErr(t, "first use", s.UseOnce(t.Context(), store.UseRegisterToken, "jti-1", exp), nil)
			wantErr(t, "second use", s.UseOnce(t.Context(), store.UseRegisterToken, "jti-1", exp), store.ErrAlreadyUsed)
			wantErr(t, "same id, other kind", s.UseOnce(t.Context(), store.UseJoinToken, "jti-1", exp), nil)
			wantErr(t, "other id", s.UseOnce(t.Context(), store.UseRegisterToken, "jti-2", exp), nil)
		}},
		{"invalid arguments are refused", func(t *testing.T, s store.Store, _ *Clock) {
			exp := t0.Add(time.Minute)
			for name, args := range map[string]struct {
				kind, id string
				exp      time.Time
			}{
				"no kind":   {"", "x", exp},
				"no id":     {store.UseRegisterToken, "", exp},
				"no expiry": {store.UseRegisterToken, "x", time.Time{}},
				"huge id":   {store.UseRegisterToken, strings.Repeat("x", 4096), exp},
				"huge kind": {strings.Repeat("k", 100), "x", exp},
			} {
				wantErr(t, name, s.UseOnce(t.Context(), args.kind, args.id, args.exp), store.ErrInvalid)
			}
		}},
		{"marks survive until pruned after expiry", func(t *testing.T, s store.Store, _ *Clock) {
			exp := t0.Add(30 * time.Minute)
			wantErr(t, "use", s.UseOnce(t.Context(), store.UseRegisterToken, "jti-1", exp), nil)
			p, err := s.Prune(t.Context(), exp.Add(-time.Second))
			wantErr(t, "Prune before expiry", err, nil)
			if p.SingleUse != 0 {
				t.Errorf("Prune before expiry removed %d marks", p.SingleUse)
			}
			wantErr(t, "reuse before expiry", s.UseOnce(t.Context(), store.UseRegisterToken, "jti-1", exp), store.ErrAlreadyUsed)
			p, err = s.Prune(t.Context(), exp.Add(time.Second))
			wantErr(t, "Prune after expiry", err, nil)
			if p.SingleUse != 1 {
				t.Errorf("Prune after expiry removed %d marks, want 1", p.SingleUse)
			}
		}},
	}
}

func joinTokenCases() []testCase {
	newToken := func(secret string, exp time.Time) store.JoinToken {
		return store.JoinToken{IDHash: hashOf(secret), Domain: "sports", Service: "api", ExpiresAt: exp, CreatedBy: "user.alice"}
	}
	return []testCase{
		{"burn returns the token once", func(t *testing.T, s store.Store, clk *Clock) {
			tok := newToken("s3cret", t0.Add(time.Hour))
			wantErr(t, "CreateJoinToken", s.CreateJoinToken(t.Context(), tok), nil)
			clk.Set(t0.Add(time.Minute))
			got, err := s.BurnJoinToken(t.Context(), hashOf("s3cret"))
			wantErr(t, "BurnJoinToken", err, nil)
			if !bytes.Equal(got.IDHash, tok.IDHash) || got.Domain != "sports" || got.Service != "api" ||
				got.CreatedBy != "user.alice" || !got.ExpiresAt.Equal(tok.ExpiresAt) ||
				!got.CreatedAt.Equal(t0) || !got.UsedAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("BurnJoinToken = %+v", got)
			}
			_, err = s.BurnJoinToken(t.Context(), hashOf("s3cret"))
			wantErr(t, "second BurnJoinToken", err, store.ErrAlreadyUsed)
		}},
		{"unknown token is not found", func(t *testing.T, s store.Store, _ *Clock) {
			wantErr(t, "CreateJoinToken", s.CreateJoinToken(t.Context(), newToken("a", t0.Add(time.Hour))), nil)
			_, err := s.BurnJoinToken(t.Context(), hashOf("b"))
			wantErr(t, "BurnJoinToken", err, store.ErrNotFound)
		}},
		{"expired token is refused and stays unused", func(t *testing.T, s store.Store, clk *Clock) {
			wantErr(t, "CreateJoinToken", s.CreateJoinToken(t.Context(), newToken("old", t0.Add(time.Hour))), nil)
			clk.Set(t0.Add(time.Hour))
			_, err := s.BurnJoinToken(t.Context(), hashOf("old"))
			wantErr(t, "BurnJoinToken at expiry", err, store.ErrExpired)
			clk.Set(t0.Add(2 * time.Hour))
			_, err = s.BurnJoinToken(t.Context(), hashOf("old"))
			wantErr(t, "BurnJoinToken after expiry", err, store.ErrExpired)
		}},
		{"duplicate hash is refused", func(t *testing.T, s store.Store, _ *Clock) {
			wantErr(t, "first", s.CreateJoinToken(t.Context(), newToken("x", t0.Add(time.Hour))), nil)
			wantErr(t, "second", s.CreateJoinToken(t.Context(), newToken("x", t0.Add(2*time.Hour))), store.ErrExists)
		}},
		{"invalid tokens are refused", func(t *testing.T, s store.Store, _ *Clock) {
			good := newToken("x", t0.Add(time.Hour))
			bad := map[string]func(tok *store.JoinToken){
				"short hash": func(tok *store.JoinToken) { tok.IDHash = tok.IDHash[:16] },
				"no hash":    func(tok *store.JoinToken) { tok.IDHash = nil },
				"no domain":  func(tok *store.JoinToken) { tok.Domain = "" },
				"no service": func(tok *store.JoinToken) { tok.Service = "" },
				"no expiry":  func(tok *store.JoinToken) { tok.ExpiresAt = time.Time{} },
			}
			for name, mutate := range bad {
				tok := good
				mutate(&tok)
				wantErr(t, name, s.CreateJoinToken(t.Context(), tok), store.ErrInvalid)
			}
			_, err := s.BurnJoinToken(t.Context(), []byte("short"))
			wantErr(t, "BurnJoinToken(short)", err, store.ErrInvalid)
		}},
	}
}

func pruneCases() []testCase {
	return []testCase{
		{"prune removes what expired and keeps the rest", func(t *testing.T, s store.Store, _ *Clock) {
			ctx := t.Context()
			now := t0.Add(100 * 24 * time.Hour)
			day := 24 * time.Hour
			// Certificates: one expired beyond the retention, one expired within it, one valid.
			oldCert := serviceCert("pod-old", "aa01")
			oldCert.NotAfter = now.Add(-store.DefaultCertificateRetention - day)
			recentCert := serviceCert("pod-recent", "aa02")
			recentCert.NotAfter = now.Add(-day)
			liveCert := serviceCert("pod-live", "aa03")
			liveCert.NotAfter = now.Add(day)
			for _, c := range []store.Certificate{oldCert, recentCert, liveCert} {
				mustPut(t, s, c)
			}
			// A revoked instance whose certificate is pruned: the revocation outlives it.
			revCert := serviceCert("pod-revoked", "aa04")
			revCert.NotAfter = oldCert.NotAfter
			mustPut(t, s, revCert)
			wantErr(t, "Revoke", s.Revoke(ctx, "sys.auth.k8s", "sports", "api", "pod-revoked", "r", t0), nil)
			// Single-use marks and join tokens.
			wantErr(t, "UseOnce expired", s.UseOnce(ctx, store.UseRegisterToken, "gone", now.Add(-time.Second)), nil)
			wantErr(t, "UseOnce live", s.UseOnce(ctx, store.UseRegisterToken, "kept", now.Add(time.Minute)), nil)
			for secret, exp := range map[string]time.Time{"gone": now.Add(-time.Second), "kept": now.Add(time.Hour)} {
				tok := store.JoinToken{IDHash: hashOf(secret), Domain: "sports", Service: "api", ExpiresAt: exp}
				wantErr(t, "CreateJoinToken", s.CreateJoinToken(ctx, tok), nil)
			}

			p, err := s.Prune(ctx, now)
			wantErr(t, "Prune", err, nil)
			want := store.Pruned{SingleUse: 1, JoinTokens: 1, Certificates: 2, Instances: 1}
			if p != want {
				t.Errorf("Prune = %+v, want %+v", p, want)
			}
			for serial, gone := range map[string]bool{"aa01": true, "aa02": false, "aa03": false, "aa04": true} {
				_, err := s.CertificateBySerial(ctx, serial)
				if gone {
					wantErr(t, "pruned "+serial, err, store.ErrNotFound)
				} else {
					wantErr(t, "kept "+serial, err, nil)
				}
			}
			_, err = s.CurrentCertificate(ctx, "sys.auth.k8s", "sports", "api", "pod-old")
			wantErr(t, "CurrentCertificate(pod-old)", err, store.ErrNotFound)
			_, err = s.CurrentCertificate(ctx, "sys.auth.k8s", "sports", "api", "pod-revoked")
			wantErr(t, "CurrentCertificate(pod-revoked)", err, store.ErrRevoked)
			wantErr(t, "UseOnce kept", s.UseOnce(ctx, store.UseRegisterToken, "kept", now.Add(time.Minute)), store.ErrAlreadyUsed)
			_, err = s.BurnJoinToken(ctx, hashOf("gone"))
			wantErr(t, "BurnJoinToken(gone)", err, store.ErrNotFound)

			// Again: nothing left to do.
			p, err = s.Prune(ctx, now)
			wantErr(t, "second Prune", err, nil)
			if p != (store.Pruned{}) {
				t.Errorf("second Prune = %+v, want nothing", p)
			}
			// After the revocation retention, the revoked instance goes too.
			p, err = s.Prune(ctx, t0.Add(store.DefaultRevocationRetention+day))
			wantErr(t, "late Prune", err, nil)
			if p.Instances < 1 {
				t.Errorf("late Prune = %+v, want the revoked instance removed", p)
			}
			mustPut(t, s, serviceCert("pod-revoked", "aa05"))
		}},
		{"prune works through more rows than one batch", func(t *testing.T, s store.Store, _ *Clock) {
			const n = 1234
			exp := t0.Add(time.Minute)
			for i := range n {
				wantErr(t, "UseOnce", s.UseOnce(t.Context(), store.UseJoinToken, serialN(i), exp), nil)
			}
			p, err := s.Prune(t.Context(), exp.Add(time.Second))
			wantErr(t, "Prune", err, nil)
			if p.SingleUse != n {
				t.Errorf("Prune removed %d marks, want %d", p.SingleUse, n)
			}
		}},
	}
}
