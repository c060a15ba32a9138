package authz

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// FuzzAuthenticate drives every credential parser through Authenticate with hostile
// header values, source principals and peer certificates: it must never panic, must
// answer every failure with a declared reason, must not repeat a token in an error, and
// may only succeed with a caller that a source vouches for.
func FuzzAuthenticate(f *testing.F) {
	k := credKeys(f)
	valid := k.accessToken(f, k.ec, "ec-1", nil)
	role := k.roleToken(f, k.ztsEC, "zts.ec", nil)
	for _, seed := range []struct{ authorization, roleToken, principal, cert string }{
		{"Bearer " + valid, "", k.api.uri, k.api.enc},
		{"Bearer " + valid, "", "", ""},
		{"Bearer " + k.accessToken(f, k.rsa, "rsa-1", nil), role, "", ""},
		{"", role, "", ""},
		{"", strings.Replace(role, "r=readers", "r=admins", 1), "", ""},
		{"", "", k.role.uri, k.role.enc},
		{"", "", k.mixedRole.uri, k.mixedRole.enc},
		{"", "", k.istio.uri, k.istio.enc},
		{"", "", "spiffe://cluster.local/ns/prod/sa/frontend", ""},
		{"", "", "spiffe://sports/ra/readers", ""},
		{"", "", "spiffe://sports/sa/api", "%zz"},
		{"", "", "CN=sports.api", pemOf(k.noURI.cert)},
		{"Bearer eyJhbGciOiJub25lIn0.e30.", "", "", ""},
		{"Bearer a.b.c", "v=Z1;d=x;r=y;t=1;e=2;s=AA", "spiffe://x/sa/y", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		{"Basic dXNlcjpwYXNz", "", "", ""},
		{"Bearer", ";s=", "spiffe://", "%0A"},
	} {
		f.Add(seed.authorization, seed.roleToken, seed.principal, seed.cert)
	}
	a, err := NewAuthenticator(credConfig(f, k), credMapping, WithAccessTokenKeys(k.keys), WithClock(func() time.Time { return credNow }))
	if err != nil {
		f.Fatal(err)
	}
	reasons := CredentialReasons()
	f.Fuzz(func(t *testing.T, authorization, roleToken, principal, cert string) {
		headers := map[string]string{}
		if authorization != "" {
			headers["authorization"] = authorization
		}
		if roleToken != "" {
			headers["athenz-role-auth"] = roleToken
		}
		in := credInput(headers, principal, cert)
		c, err := a.Authenticate(context.Background(), in)
		if err != nil {
			var ce *CredentialError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CredentialError", err)
			}
			if !slices.Contains(reasons, ce.Reason) {
				t.Fatalf("undeclared reason %q", ce.Reason)
			}
			if !callersEqual(c, Caller{}) {
				t.Fatalf("caller %+v with an error", c)
			}
			assertNoCredentialText(t, err, in)
			return
		}
		switch c.Source {
		case SourceAccessToken, SourceRoleToken, SourceRoleCert:
			if !athenz.IsDomainName(c.TokenDomain) || len(c.Roles) == 0 {
				t.Fatalf("token caller %+v without a valid domain and roles", c)
			}
			for _, r := range c.Roles {
				if !athenz.IsEntityName(r) {
					t.Fatalf("token caller %+v with role %q", c, r)
				}
			}
		case SourceMTLS:
			if c.TokenDomain != "" || c.Roles != nil {
				t.Fatalf("mTLS caller %+v with token roles", c)
			}
			if c.Principal != "" {
				d, s, ok := athenz.SplitPrincipal(c.Principal)
				if !ok || !athenz.IsDomainName(d) || !athenz.IsSimpleName(s) {
					t.Fatalf("mTLS caller with invalid principal %q", c.Principal)
				}
			}
		default:
			t.Fatalf("caller %+v from unknown source", c)
		}
	})
}

// FuzzParsePeerCertificate checks the certificate reader and the principal agreement on
// arbitrary input.
func FuzzParsePeerCertificate(f *testing.F) {
	k := credKeys(f)
	for _, c := range []credCert{k.api, k.role, k.istio, k.noURI} {
		f.Add(c.enc, c.uri)
	}
	f.Add(pemOf(k.api.cert), "CN=sports.api")
	f.Add("%", "")
	f.Add("-----BEGIN CERTIFICATE-----%0A%0A-----END CERTIFICATE-----", "spiffe://x/sa/y")
	f.Fuzz(func(t *testing.T, s, principal string) {
		cert, err := parsePeerCertificate(s)
		if err != nil {
			if cert != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		certNames(cert, principal)
		if _, err := certIdentity(cert); err != nil && !errors.Is(err, athenz.ErrInvalidIdentity) {
			t.Fatalf("identity error %v does not wrap ErrInvalidIdentity", err)
		}
	})
}
