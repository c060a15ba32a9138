package k8s_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/attestor"
	"github.com/athenz-mesh/athenz-mesh/attestor/k8s"
)

// offlineVerifier verifies against a JWKS file holding the cluster's RSA and EC keys.
func offlineVerifier(t testing.TB, edit func(c *k8s.Config)) *k8s.Verifier {
	t.Helper()
	k := keys()
	file := writeFile(t, "jwks.json", jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa, "ec-1": k.ec}))
	cfg := k8s.Config{
		Audiences:   []string{"athenz-mesh"},
		Mapping:     testMapping(),
		MaxValidity: 24 * time.Hour,
		Offline:     &k8s.OfflineConfig{Issuer: testIssuer, File: file},
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := k8s.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyOffline(t *testing.T) {
	k := keys()
	b64 := base64.RawURLEncoding
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		edit   func(r *attestor.Request)
		cfg    func(c *k8s.Config)
		reason attestor.Reason
		check  func(t *testing.T, res *attestor.Result)
	}{
		{name: "valid RS256", token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) }},
		{name: "valid ES256", token: func(t *testing.T) string { return saToken(t, k.ec, "ec-1", nil) }},
		{name: "audience as a string", token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["aud"] = "athenz-mesh" })
		}},
		{name: "one of several audiences", token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["aud"] = []string{"vault", "athenz-mesh"} })
		}},
		{name: "request naming nothing (Istio)", token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.Domain, r.Service, r.InstanceID = "", "", "" }},
		{name: "request naming the namespace", token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.Namespace = "sports" }},
		{name: "instance id from the pod name", token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			cfg:  func(c *k8s.Config) { c.InstanceID = k8s.InstanceIDPodName },
			edit: func(r *attestor.Request) { r.InstanceID = testPodName },
			check: func(t *testing.T, res *attestor.Result) {
				if res.InstanceID != testPodName {
					t.Fatalf("instance id %q", res.InstanceID)
				}
			}},
		{name: "explicit entry", token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				kio(c)["namespace"], c["sub"] = "payments", "system:serviceaccount:payments:api"
			})
		}, edit: func(r *attestor.Request) { r.Domain, r.Service = "finance.payments", "gateway" },
			check: func(t *testing.T, res *attestor.Result) {
				if res.Domain != "finance.payments" || res.Service != "gateway" || res.Namespace != "payments" {
					t.Fatalf("result %+v", res)
				}
			}},
		{name: "expired within the skew", token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() })
		}},
		{name: "wrong audience", reason: attestor.ReasonWrongAudience, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc.cluster.local"} })
		}},
		{name: "expired", reason: attestor.ReasonExpired, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
			})
		}},
		{name: "issued in the future", reason: attestor.ReasonNotYetValid, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["iat"], c["nbf"] = now.Add(5*time.Minute).Unix(), nil })
		}},
		{name: "not before in the future", reason: attestor.ReasonNotYetValid, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() })
		}},
		{name: "wrong issuer", reason: attestor.ReasonWrongIssuer, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["iss"] = "https://oidc.eks.example.com/id/OTHER" })
		}},
		{name: "unknown kid", reason: attestor.ReasonUnknownKey, token: func(t *testing.T) string { return saToken(t, k.rogue, "rogue-1", nil) }},
		{name: "no kid", reason: attestor.ReasonUnknownKey, token: func(t *testing.T) string { return saToken(t, k.rsa, "", nil) }},
		{name: "another key under a known kid", reason: attestor.ReasonBadSignature, token: func(t *testing.T) string { return saToken(t, k.rogue, "ec-1", nil) }},
		{name: "ES256 header on the RSA kid", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string { return saToken(t, k.ec, "rsa-1", nil) }},
		{name: "alg none", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string {
			parts := strings.Split(saToken(t, k.rsa, "rsa-1", nil), ".")
			parts[0] = b64.EncodeToString([]byte(`{"alg":"none","kid":"rsa-1"}`))
			return strings.Join(parts, ".")
		}},
		{name: "HS256 keyed with the JWKS", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string {
			input := b64.EncodeToString([]byte(`{"alg":"HS256","kid":"rsa-1"}`)) + "." + strings.Split(saToken(t, k.rsa, "rsa-1", nil), ".")[1]
			m := hmac.New(sha256.New, jwksJSON(t, map[string]crypto.Signer{"rsa-1": k.rsa}))
			m.Write([]byte(input))
			return input + "." + b64.EncodeToString(m.Sum(nil))
		}},
		{name: "ES384 is not a Kubernetes algorithm", reason: attestor.ReasonUnsupportedAlgorithm, token: func(t *testing.T) string {
			parts := strings.Split(saToken(t, k.rsa, "rsa-1", nil), ".")
			parts[0] = b64.EncodeToString([]byte(`{"alg":"ES384","kid":"ec-1"}`))
			return strings.Join(parts, ".")
		}},
		{name: "unmapped namespace", reason: attestor.ReasonUnmapped, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				kio(c)["namespace"], c["sub"] = "kube-system", "system:serviceaccount:kube-system:api"
			})
		}},
		{name: "unmapped service account", reason: attestor.ReasonUnmapped, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				kio(c)["namespace"], c["sub"] = "payments", "system:serviceaccount:payments:api"
				kio(c)["serviceaccount"] = map[string]any{"name": "batch", "uid": testSAUID}
				c["sub"] = "system:serviceaccount:payments:batch"
			})
		}},
		{name: "service account name that is no Athenz service", reason: attestor.ReasonUnmapped, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				kio(c)["serviceaccount"] = map[string]any{"name": "api.v2", "uid": testSAUID}
				c["sub"] = "system:serviceaccount:sports:api.v2"
			})
		}},
		{name: "not bound to a pod", reason: attestor.ReasonNotBound, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { delete(kio(c), "pod") })
		}},
		{name: "legacy secret token", reason: attestor.ReasonNotBound, token: func(t *testing.T) string {
			legacy := map[string]any{
				"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:sports:api",
				"kubernetes.io/serviceaccount/namespace": "sports", "kubernetes.io/serviceaccount/service-account.name": "api",
			}
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) {
				clear(c)
				for k, v := range legacy {
					c[k] = v
				}
			})
		}},
		{name: "subject disagrees with the claim", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { c["sub"] = "system:serviceaccount:payments:api" })
		}},
		{name: "no exp", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { delete(c, "exp") })
		}},
		{name: "pod uid with a slash", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return saToken(t, k.rsa, "rsa-1", func(c map[string]any) { kio(c)["pod"] = map[string]any{"name": "p", "uid": "a/b"} })
		}},
		{name: "wrong service in the request", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.Service = "web" }},
		{name: "wrong domain in the request", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.Domain = "weather" }},
		{name: "another pod's instance id", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.InstanceID = "00000000-0000-4000-8000-000000000000" }},
		{name: "another namespace in the request", reason: attestor.ReasonIdentityMismatch, token: func(t *testing.T) string { return saToken(t, k.rsa, "rsa-1", nil) },
			edit: func(r *attestor.Request) { r.Namespace = "default" }},
		{name: "garbage", reason: attestor.ReasonMalformed, token: func(t *testing.T) string { return "garbage" }},
		{name: "oversized", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			return "eyJ" + strings.Repeat("a", k8s.MaxTokenLength) + ".b.c"
		}},
		{name: "duplicate claim", reason: attestor.ReasonMalformed, token: func(t *testing.T) string {
			parts := strings.Split(saToken(t, k.ec, "ec-1", nil), ".")
			payload, _ := b64.DecodeString(parts[1])
			dup := strings.Replace(string(payload), `"iss":`, `"iss":"https://evil.example","iss":`, 1)
			tok, err := athenz.SignJWS(k.ec, athenz.JWSHeader{Kid: "ec-1"}, []byte(dup))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := offlineVerifier(t, tc.cfg)
			r := request(tc.token(t))
			if tc.edit != nil {
				tc.edit(r)
			}
			res, err := v.Verify(context.Background(), r)
			if tc.reason != "" {
				var e *attestor.Error
				if res != nil || !errors.As(err, &e) || e.Reason != tc.reason || e.Message == "" {
					t.Fatalf("got %+v, %v; want reason %s", res, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.check != nil {
				tc.check(t, res)
				return
			}
			want := map[string]string{
				"namespace": "sports", "service_account": "api", "service_account_uid": testSAUID,
				"pod_name": testPodName, "pod_uid": testPodUID, "node_name": "node-1", "token_id": "3c8e1d2a-9b7f-4e6d-a5c4-b3a2918f7e6d",
			}
			if res.Domain != "sports" || res.Service != "api" || res.InstanceID != testPodUID || !res.Refreshable ||
				res.Namespace != "sports" || res.MaxValidity != 24*time.Hour || len(res.DNSNames) != 0 || len(res.Attributes) != len(want) {
				t.Fatalf("result %+v", res)
			}
			for k, v := range want {
				if res.Attributes[k] != v {
					t.Errorf("attribute %s = %q, want %q", k, res.Attributes[k], v)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	file := writeFile(t, "jwks.json", jwksJSON(t, map[string]crypto.Signer{"rsa-1": keys().rsa}))
	offline := &k8s.OfflineConfig{Issuer: testIssuer, File: file}
	bad := map[string]k8s.Config{
		"no mode":           {Audiences: []string{"a"}},
		"both modes":        {Audiences: []string{"a"}, Offline: offline, TokenReview: &k8s.TokenReviewConfig{Server: "https://x"}},
		"no audience":       {Offline: offline},
		"empty audience":    {Audiences: []string{""}, Offline: offline},
		"no issuer":         {Audiences: []string{"a"}, Offline: &k8s.OfflineConfig{File: file}},
		"file and URL":      {Audiences: []string{"a"}, Offline: &k8s.OfflineConfig{Issuer: testIssuer, File: file, URL: "https://x"}},
		"unknown instance":  {Audiences: []string{"a"}, Offline: offline, InstanceID: "node"},
		"bad mapping":       {Audiences: []string{"a"}, Offline: offline, Mapping: k8s.Mapping{Entries: []k8s.MappingEntry{{Namespace: "A"}}}},
		"missing CA file":   {Audiences: []string{"a"}, Offline: &k8s.OfflineConfig{Issuer: testIssuer, CAFile: "/nonexistent/ca.crt"}},
		"review not https":  {Audiences: []string{"a"}, TokenReview: &k8s.TokenReviewConfig{Server: "kubernetes:443"}},
		"negative validity": {Audiences: []string{"a"}, Offline: offline, MaxValidity: -1},
	}
	for name, cfg := range bad {
		if _, err := k8s.NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := k8s.NewVerifier(k8s.Config{Audiences: []string{"a"}, TokenReview: &k8s.TokenReviewConfig{}}); err == nil {
		t.Error("in-cluster token review outside a cluster accepted")
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := offlineVerifier(t, nil).Verify(ctx, request(saToken(t, keys().rsa, "rsa-1", nil)))
	if attestor.ReasonOf(err) != attestor.ReasonUnavailable {
		t.Fatalf("got %v", err)
	}
}
