package issuer_test

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/AthenZ/athenz/clients/go/zts"
	"github.com/ardielle/ardielle-go/rdl"

	"github.com/athenz-mesh/athenz-mesh/issuer"
)

// TestZTSGoClient runs Athenz's own Go ZTS client, which validates every response
// against the RDL schema, against the issuer for every route it has.
func TestZTSGoClient(t *testing.T) {
	e := newEnv(t)
	newClient := func(cert *tls.Certificate) zts.ZTSClient {
		cfg := &tls.Config{RootCAs: e.roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return zts.NewClient(e.base, &http.Transport{TLSClientConfig: cfg})
	}
	anon := newClient(nil)
	ops := newClient(e.serviceCert(t, "sports.ops"))
	step := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	// Service certificate with an n-token (PostInstanceRefreshRequest).
	ntClient := newClient(nil)
	ntClient.AddCredentials(issuer.DefaultNTokenHeader, ntoken(t, "sports.api", serviceKey("sports.api"), "0", time.Now(), 10*time.Minute))
	ident, err := ntClient.PostInstanceRefreshRequest("sports", "api", &zts.InstanceRefreshRequest{Csr: serviceCSR(t, serviceKey("sports.api"), "sports", "api", "", "")})
	step("PostInstanceRefreshRequest", err)
	if ident.Name != "sports.api" || ident.Certificate == "" || ident.CaCertBundle == "" {
		t.Fatalf("identity %+v", ident)
	}

	// Register token, register, refresh, delete.
	rt, err := ops.GetInstanceRegisterToken("sys.auth.zts", "sports", "web", "host-1")
	step("GetInstanceRegisterToken", err)
	key := newP256(t)
	jwk := true
	epoch := rdl.TimestampFromEpoch(0)
	iid, loc, err := anon.PostInstanceRegisterInformation(&zts.InstanceRegisterInformation{
		Provider: "sys.auth.zts", Domain: "sports", Service: "web", AttestationData: rt.AttestationData,
		Csr: serviceCSR(t, key, "sports", "web", "sys.auth.zts", "host-1"), AthenzJWK: &jwk, AthenzJWKModified: &epoch,
	})
	step("PostInstanceRegisterInformation", err)
	if loc == "" || iid.AthenzJWK == nil || iid.AthenzJWK.Modified == nil || len(iid.AthenzJWK.Zts.Keys) != 1 {
		t.Fatalf("register: location %q, identity %+v", loc, iid)
	}
	inst := newClient(tlsCert(t, iid.X509Certificate, key))
	iid2, err := inst.PostInstanceRefreshInformation("sys.auth.zts", "sports", "web", "host-1",
		&zts.InstanceRefreshInformation{Csr: serviceCSR(t, key, "sports", "web", "sys.auth.zts", "host-1")})
	step("PostInstanceRefreshInformation", err)
	if iid2.X509Certificate == "" || iid2.X509CertificateSigner == "" {
		t.Fatalf("refresh %+v", iid2)
	}
	step("DeleteInstanceIdentity", ops.DeleteInstanceIdentity("sys.auth.zts", "sports", "web", "host-1"))

	// Role certificates, both forms.
	roleKey := newP256(t)
	rcsr := makeCSR(t, csrSpec{key: roleKey, cn: "sports:role.readers", uris: []string{"spiffe://sports/ra/readers", "athenz://principal/sports.ops"}, emails: []string{"sports.ops@athenz.cloud"}})
	rc, err := ops.PostRoleCertificateRequestExt(&zts.RoleCertificateRequest{Csr: rcsr, ExpiryTime: 0})
	step("PostRoleCertificateRequestExt", err)
	if rc.X509Certificate == "" {
		t.Fatal("empty role certificate")
	}
	rtc, err := ops.PostRoleCertificateRequest("sports", "readers", &zts.RoleCertificateRequest{Csr: rcsr})
	step("PostRoleCertificateRequest", err)
	if rtc.Token == "" || rtc.ExpiryTime == 0 {
		t.Fatalf("role token certificate %+v", rtc)
	}

	// Tokens.
	at, err := ops.PostAccessTokenRequest("grant_type=client_credentials&scope=sports%3Adomain")
	step("PostAccessTokenRequest", err)
	if at.Access_token == "" || at.Expires_in == nil || *at.Expires_in != 3600 {
		t.Fatalf("access token %+v", at)
	}
	tok, err := ops.GetRoleToken("sports", "readers", nil, nil, "")
	step("GetRoleToken", err)
	if tok.Token == "" {
		t.Fatal("empty role token")
	}

	// Policies.
	spd, etag, err := anon.GetDomainSignedPolicyData("sports", "")
	step("GetDomainSignedPolicyData", err)
	if spd == nil || etag == "" {
		t.Fatal("no signed policy data")
	}
	spd, _, err = anon.GetDomainSignedPolicyData("sports", etag)
	step("GetDomainSignedPolicyData (304)", err)
	if spd != nil {
		t.Fatal("If-None-Match did not give 304")
	}
	jws, _, err := anon.PostSignedPolicyRequest("sports", &zts.SignedPolicyRequest{SignatureP1363Format: true}, "")
	step("PostSignedPolicyRequest", err)
	if jws.Payload == "" || jws.Signature == "" {
		t.Fatalf("JWS %+v", jws)
	}

	// Keys and configuration.
	si, err := anon.GetServiceIdentity("sys.auth", "zms")
	step("GetServiceIdentity", err)
	if len(si.PublicKeys) != 1 {
		t.Fatalf("sys.auth.zms %+v", si)
	}
	pk, err := anon.GetPublicKeyEntry("sports", "api", "0")
	step("GetPublicKeyEntry", err)
	if pk.Key == "" {
		t.Fatal("empty public key")
	}
	rfc := true
	jwks, err := anon.GetJWKList(&rfc, "zts")
	step("GetJWKList", err)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Crv != "P-256" || jwks.Keys[0].Kid != "0" {
		t.Fatalf("JWKS %+v", jwks.Keys[0])
	}
	cab, err := anon.GetCertificateAuthorityBundle("athenz")
	step("GetCertificateAuthorityBundle", err)
	if cab.Certs == "" {
		t.Fatal("empty CA bundle")
	}
	_, err = anon.GetOpenIDConfig()
	step("GetOpenIDConfig", err)
	_, err = anon.GetOAuthConfig()
	step("GetOAuthConfig", err)

	// Errors come back as rdl.ResourceError with the status.
	_, err = ops.GetRoleToken("nosuch", "", nil, nil, "")
	if re, ok := err.(rdl.ResourceError); !ok || re.Code != 404 || re.Message == "" {
		t.Fatalf("error %#v", err)
	}
}
