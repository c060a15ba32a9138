package storetest

import (
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/issuer/store"
)

func certificateCases() []testCase {
	return []testCase{
		{"round trip keeps every field", func(t *testing.T, s store.Store, _ *Clock) {
			c := serviceCert("pod-1", "0abc")
			c.NotBefore = time.Date(2030, 1, 1, 0, 0, 0, 1000, time.FixedZone("x", 3600))
			mustPut(t, s, c)
			got, err := s.CertificateBySerial(t.Context(), "abc")
			wantErr(t, "CertificateBySerial", err, nil)
			want := c
			want.Serial = "abc"
			sameCert(t, got, want)
			if got.NotBefore.Location() != time.UTC {
				t.Errorf("NotBefore location %v, want UTC", got.NotBefore.Location())
			}
		}},
		{"serials are normalized on the way in and on lookup", func(t *testing.T, s store.Store, _ *Clock) {
			mustPut(t, s, serviceCert("pod-1", "00:0A:1B"))
			for _, q := range []string{"a1b", "A1B", "0a:1b", "000a1b"} {
				got, err := s.CertificateBySerial(t.Context(), q)
				wantErr(t, "CertificateBySerial("+q+")", err, nil)
				if got.Serial != "a1b" {
					t.Errorf("CertificateBySerial(%s).Serial = %q, want a1b", q, got.Serial)
				}
			}
		}},
		{"unknown serial is not found", func(t *testing.T, s store.Store, _ *Clock) {
			_, err := s.CertificateBySerial(t.Context(), "1234")
			wantErr(t, "CertificateBySerial", err, store.ErrNotFound)
		}},
		{"malformed serial on lookup is invalid", func(t *testing.T, s store.Store, _ *Clock) {
			_, err := s.CertificateBySerial(t.Context(), "xyz")
			wantErr(t, "CertificateBySerial", err, store.ErrInvalid)
			_, err = s.IsRevoked(t.Context(), "")
			wantErr(t, "IsRevoked", err, store.ErrInvalid)
		}},
		{"invalid records are refused and nothing is stored", func(t *testing.T, s store.Store, _ *Clock) {
			base := serviceCert("pod-1", "77")
			role := base
			role.Kind, role.RoleName = store.KindRole, "sports:role.readers"
			bad := map[string]func(c *store.Certificate){
				"no serial":               func(c *store.Certificate) { c.Serial = "" },
				"serial not hex":          func(c *store.Certificate) { c.Serial = "0xzz" },
				"serial zero":             func(c *store.Certificate) { c.Serial = "00" },
				"serial too long":         func(c *store.Certificate) { c.Serial = "1" + string(make([]byte, 80)) },
				"previous serial not hex": func(c *store.Certificate) { c.PreviousSerial = "g" },
				"unknown kind":            func(c *store.Certificate) { c.Kind = "host" },
				"service with role name":  func(c *store.Certificate) { c.RoleName = "sports:role.x" },
				"role without role name":  func(c *store.Certificate) { c.Kind = store.KindRole },
				"no domain":               func(c *store.Certificate) { c.Domain = "" },
				"no service":              func(c *store.Certificate) { c.Service = "" },
				"no not-after":            func(c *store.Certificate) { c.NotAfter = time.Time{} },
				"not-after before not-before": func(c *store.Certificate) {
					c.NotAfter = c.NotBefore.Add(-time.Second)
				},
			}
			for name, mutate := range bad {
				c := base
				mutate(&c)
				wantErr(t, name, s.PutCertificate(t.Context(), c), store.ErrInvalid)
			}
			_, err := s.CertificateBySerial(t.Context(), "77")
			wantErr(t, "CertificateBySerial after refusals", err, store.ErrNotFound)
			mustPut(t, s, role)
		}},
		{"duplicate serial is refused", func(t *testing.T, s store.Store, _ *Clock) {
			mustPut(t, s, serviceCert("pod-1", "99"))
			err := s.PutCertificate(t.Context(), serviceCert("pod-2", "0099"))
			wantErr(t, "second PutCertificate", err, store.ErrExists)
			// The failed put must not have made pod-2's current certificate point at 99.
			_, err = s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-2")
			wantErr(t, "CurrentCertificate(pod-2)", err, store.ErrNotFound)
		}},
		{"issued-at defaults to the store clock", func(t *testing.T, s store.Store, clk *Clock) {
			clk.Set(t0.Add(time.Hour))
			c := serviceCert("pod-1", "10")
			c.IssuedAt = time.Time{}
			mustPut(t, s, c)
			got, err := s.CertificateBySerial(t.Context(), "10")
			wantErr(t, "CertificateBySerial", err, nil)
			if !got.IssuedAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("IssuedAt = %v, want %v", got.IssuedAt, t0.Add(time.Hour))
			}
		}},
		{"registration makes the certificate current", func(t *testing.T, s store.Store, _ *Clock) {
			_, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate before", err, store.ErrNotFound)
			c := serviceCert("pod-1", "a1")
			mustPut(t, s, c)
			got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate", err, nil)
			sameCert(t, got, c)
			for _, other := range [][4]string{
				{"sys.auth.aws", "sports", "api", "pod-1"},
				{"sys.auth.k8s", "weather", "api", "pod-1"},
				{"sys.auth.k8s", "sports", "web", "pod-1"},
				{"sys.auth.k8s", "sports", "api", "pod-2"},
			} {
				_, err := s.CurrentCertificate(t.Context(), other[0], other[1], other[2], other[3])
				wantErr(t, "CurrentCertificate of another instance", err, store.ErrNotFound)
			}
		}},
		{"refresh from the current certificate replaces it", func(t *testing.T, s store.Store, _ *Clock) {
			c1 := serviceCert("pod-1", "b1")
			mustPut(t, s, c1)
			c2 := refresh(c1, "b2")
			mustPut(t, s, c2)
			got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate", err, nil)
			sameCert(t, got, c2)
			c3 := refresh(c2, "b3")
			mustPut(t, s, c3)
			// The superseded certificates stay on record.
			old, err := s.CertificateBySerial(t.Context(), "b1")
			wantErr(t, "CertificateBySerial(b1)", err, nil)
			sameCert(t, old, c1)
		}},
		{"refresh from a superseded certificate is refused", func(t *testing.T, s store.Store, _ *Clock) {
			c1 := serviceCert("pod-1", "c1")
			mustPut(t, s, c1)
			mustPut(t, s, refresh(c1, "c2"))
			err := s.PutCertificate(t.Context(), refresh(c1, "c3"))
			wantErr(t, "refresh from c1", err, store.ErrSerialMismatch)
			_, err = s.CertificateBySerial(t.Context(), "c3")
			wantErr(t, "CertificateBySerial(c3)", err, store.ErrNotFound)
			got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate", err, nil)
			if got.Serial != "c2" {
				t.Errorf("current serial %s, want c2", got.Serial)
			}
		}},
		{"refresh of an unknown instance is refused", func(t *testing.T, s store.Store, _ *Clock) {
			c := refresh(serviceCert("pod-9", "d0"), "d1")
			wantErr(t, "refresh", s.PutCertificate(t.Context(), c), store.ErrNotFound)
			_, err := s.CertificateBySerial(t.Context(), "d1")
			wantErr(t, "CertificateBySerial", err, store.ErrNotFound)
		}},
		{"refresh with another instance's certificate is refused", func(t *testing.T, s store.Store, _ *Clock) {
			mine := serviceCert("pod-1", "e1")
			theirs := serviceCert("pod-2", "e2")
			mustPut(t, s, mine)
			mustPut(t, s, theirs)
			c := refresh(mine, "e3")
			c.PreviousSerial = "e2"
			wantErr(t, "refresh", s.PutCertificate(t.Context(), c), store.ErrSerialMismatch)
		}},
		{"registration again replaces the current certificate", func(t *testing.T, s store.Store, _ *Clock) {
			mustPut(t, s, serviceCert("pod-1", "f1"))
			mustPut(t, s, serviceCert("pod-1", "f2"))
			got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate", err, nil)
			if got.Serial != "f2" {
				t.Errorf("current serial %s, want f2", got.Serial)
			}
		}},
		{"role certificates do not change the current certificate", func(t *testing.T, s store.Store, _ *Clock) {
			svc := serviceCert("pod-1", "11")
			mustPut(t, s, svc)
			role := serviceCert("pod-1", "12")
			role.Kind, role.RoleName = store.KindRole, "sports:role.readers"
			mustPut(t, s, role)
			got, err := s.CurrentCertificate(t.Context(), "sys.auth.k8s", "sports", "api", "pod-1")
			wantErr(t, "CurrentCertificate", err, nil)
			sameCert(t, got, svc)
			r, err := s.CertificateBySerial(t.Context(), "12")
			wantErr(t, "CertificateBySerial(role)", err, nil)
			sameCert(t, r, role)
		}},
		{"certificates without an instance are recorded only", func(t *testing.T, s store.Store, _ *Clock) {
			c := serviceCert("", "21")
			c.Provider = ""
			mustPut(t, s, c)
			c2 := serviceCert("", "22")
			c2.Provider, c2.PreviousSerial = "", "21"
			mustPut(t, s, c2)
			_, err := s.CurrentCertificate(t.Context(), "", "sports", "api", "")
			wantErr(t, "CurrentCertificate", err, store.ErrNotFound)
		}},
	}
}

func revocationCases() []testCase {
	const p, d, sv = "sys.auth.k8s", "sports", "api"
	return []testCase{
		{"revoke blocks refresh and marks every certificate of the instance", func(t *testing.T, s store.Store, _ *Clock) {
			c1 := serviceCert("pod-1", "31")
			mustPut(t, s, c1)
			c2 := refresh(c1, "32")
			mustPut(t, s, c2)
			role := serviceCert("pod-1", "33")
			role.Kind, role.RoleName = store.KindRole, "sports:role.readers"
			mustPut(t, s, role)
			other := serviceCert("pod-2", "34")
			mustPut(t, s, other)

			at := t0.Add(time.Hour)
			wantErr(t, "Revoke", s.Revoke(t.Context(), p, d, sv, "pod-1", "key compromised", at), nil)

			got, err := s.CurrentCertificate(t.Context(), p, d, sv, "pod-1")
			wantErr(t, "CurrentCertificate", err, store.ErrRevoked)
			if got.Serial != "32" || !got.RevokedAt.Equal(at) || got.RevocationReason != "key compromised" {
				t.Errorf("revoked current = %+v, want serial 32 revoked at %v for the reason given", got, at)
			}
			for serial, want := range map[string]bool{"31": true, "32": true, "33": true, "34": false, "35": false} {
				revoked, err := s.IsRevoked(t.Context(), serial)
				wantErr(t, "IsRevoked("+serial+")", err, nil)
				if revoked != want {
					t.Errorf("IsRevoked(%s) = %v, want %v", serial, revoked, want)
				}
			}
			rec, err := s.CertificateBySerial(t.Context(), "31")
			wantErr(t, "CertificateBySerial", err, nil)
			if !rec.RevokedAt.Equal(at) || rec.RevocationReason != "key compromised" {
				t.Errorf("record 31 = %+v, want revoked at %v", rec, at)
			}
			wantErr(t, "refresh after revoke", s.PutCertificate(t.Context(), refresh(c2, "36")), store.ErrRevoked)
			wantErr(t, "register after revoke", s.PutCertificate(t.Context(), serviceCert("pod-1", "37")), store.ErrRevoked)
			role2 := role
			role2.Serial = "38"
			wantErr(t, "role certificate after revoke", s.PutCertificate(t.Context(), role2), store.ErrRevoked)
			mustPut(t, s, refresh(other, "39"))
		}},
		{"revoke is idempotent and keeps the first time and reason", func(t *testing.T, s store.Store, _ *Clock) {
			mustPut(t, s, serviceCert("pod-1", "41"))
			wantErr(t, "Revoke", s.Revoke(t.Context(), p, d, sv, "pod-1", "first", t0.Add(time.Hour)), nil)
			wantErr(t, "Revoke again", s.Revoke(t.Context(), p, d, sv, "pod-1", "second", t0.Add(2*time.Hour)), nil)
			got, err := s.CurrentCertificate(t.Context(), p, d, sv, "pod-1")
			wantErr(t, "CurrentCertificate", err, store.ErrRevoked)
			if !got.RevokedAt.Equal(t0.Add(time.Hour)) || got.RevocationReason != "first" {
				t.Errorf("after two revokes: %v %q, want %v \"first\"", got.RevokedAt, got.RevocationReason, t0.Add(time.Hour))
			}
			rec, err := s.CertificateBySerial(t.Context(), "41")
			wantErr(t, "CertificateBySerial", err, nil)
			if rec.RevocationReason != "first" {
				t.Errorf("record reason %q, want first", rec.RevocationReason)
			}
		}},
		{"revoking an unknown instance blocks it in advance", func(t *testing.T, s store.Store, _ *Clock) {
			wantErr(t, "Revoke", s.Revoke(t.Context(), p, d, sv, "pod-7", "stolen", t0), nil)
			got, err := s.CurrentCertificate(t.Context(), p, d, sv, "pod-7")
			wantErr(t, "CurrentCertificate", err, store.ErrRevoked)
			if got.Serial != "" || got.RevocationReason != "stolen" {
				t.Errorf("CurrentCertificate = %+v, want no serial and reason stolen", got)
			}
			wantErr(t, "register", s.PutCertificate(t.Context(), serviceCert("pod-7", "71")), store.ErrRevoked)
		}},
		{"revoke needs an instance and a time", func(t *testing.T, s store.Store, _ *Clock) {
			wantErr(t, "no instance", s.Revoke(t.Context(), p, d, sv, "", "r", t0), store.ErrInvalid)
			wantErr(t, "no domain", s.Revoke(t.Context(), p, "", sv, "pod-1", "r", t0), store.ErrInvalid)
			wantErr(t, "no time", s.Revoke(t.Context(), p, d, sv, "pod-1", "r", time.Time{}), store.ErrInvalid)
		}},
	}
}
