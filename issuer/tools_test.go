package issuer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// The real Athenz tools, built by scripts/test.sh into .bin/ and named by these variables.
// Without them the tests skip, so that `go test ./...` alone still passes.
const (
	envSvcCert     = "ATHENZ_ZTS_SVCCERT"
	envRoleCert    = "ATHENZ_ZTS_ROLECERT"
	envAccessToken = "ATHENZ_ZTS_ACCESSTOKEN"
	envZPEUpdater  = "ATHENZ_ZPE_UPDATER"
)

func toolPath(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Skipf("%s is not set: run scripts/test.sh, which builds the Athenz tools (v1.12.13) into .bin/", env)
	}
	return p
}

// run runs a tool and returns its standard output, failing the test on a non-zero exit.
func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// writeKey writes an ECDSA key as "EC PRIVATE KEY" PEM, as Athenz tools read it.
func writeKey(t *testing.T, path string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// toolsEnv is a running issuer plus a work directory with the CA bundle and the keys of
// sports.api and sports.ops.
func toolsEnv(t *testing.T) (*env, string) {
	e := newEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), e.srv.CA().RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "api.key.pem"), serviceKey("sports.api"))
	writeKey(t, filepath.Join(dir, "ops.key.pem"), serviceKey("sports.ops"))
	return e, dir
}

// svcCert runs zts-svccert in n-token mode for sports.<service> and returns the cert path.
func svcCert(t *testing.T, e *env, dir, bin, service string) string {
	t.Helper()
	out := filepath.Join(dir, service+".cert.pem")
	run(t, dir, bin, "-zts", e.base, "-private-key", service+".key.pem", "-key-version", "0",
		"-domain", "sports", "-service", service, "-dns-domain", "athenz.cloud", "-cacert", "ca.pem",
		"-cert-file", out, "-signer-cert-file", filepath.Join(dir, service+".signer.pem"))
	return out
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseCert(t, string(data))
}

func TestToolSvcCert(t *testing.T) {
	bin := toolPath(t, envSvcCert)
	e, dir := toolsEnv(t)

	// n-token mode: POST /instance/sports/api/refresh with Athenz-Principal-Auth.
	c := readCert(t, svcCert(t, e, dir, bin, "api"))
	if c.Subject.CommonName != "sports.api" || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://sports/sa/api" {
		t.Fatalf("n-token mode certificate: CN %q URIs %v", c.Subject.CommonName, c.URIs)
	}

	// Register token mode: sports.ops (an admin) fetches a register token for sports.web
	// over mTLS, then zts-svccert registers a fresh RSA key with it.
	svcCert(t, e, dir, bin, "ops")
	webCert := filepath.Join(dir, "web.cert.pem")
	run(t, dir, bin, "-use-instance-register-token", "-zts", e.base,
		"-svc-key-file", "ops.key.pem", "-svc-cert-file", "ops.cert.pem", "-cacert", "ca.pem",
		"-private-key", "web.key.pem", "-provider", "sys.auth.zts", "-domain", "sports", "-service", "web",
		"-instance", "pod-7", "-dns-domain", "athenz.cloud", "-cert-file", webCert)
	w := readCert(t, webCert)
	id, err := athenz.PrincipalFromCertificate(w)
	if err != nil || id.Principal != "sports.web" || id.InstanceID != "pod-7" || id.InstanceProvider != "sys.auth.zts" {
		t.Fatalf("register token certificate %+v: %v", id, err)
	}
	if _, err := e.store.CurrentCertificate(context.Background(), "sys.auth.zts", "sports", "web", "pod-7"); err != nil {
		t.Fatalf("store: %v", err)
	}

	// -get-instance-register-token alone prints the token.
	tok := strings.TrimSpace(run(t, dir, bin, "-get-instance-register-token", "-zts", e.base,
		"-svc-key-file", "ops.key.pem", "-svc-cert-file", "ops.cert.pem", "-cacert", "ca.pem",
		"-provider", "sys.auth.zts", "-domain", "sports", "-service", "web", "-instance", "pod-8"))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("register token %q", tok)
	}
}

func TestToolRoleCert(t *testing.T) {
	svc := toolPath(t, envSvcCert)
	bin := toolPath(t, envRoleCert)
	e, dir := toolsEnv(t)
	svcCert(t, e, dir, svc, "ops")
	out := filepath.Join(dir, "writers.cert.pem")
	run(t, dir, bin, "-zts", e.base, "-svc-key-file", "ops.key.pem", "-svc-cert-file", "ops.cert.pem",
		"-cacert", "ca.pem", "-role-domain", "sports", "-role-name", "writers", "-dns-domain", "athenz.cloud",
		"-role-cert-file", out)
	id, err := athenz.PrincipalFromCertificate(readCert(t, out))
	if err != nil || id.Principal != "sports.ops" || len(id.Roles) != 1 || id.Roles[0].Role != "writers" {
		t.Fatalf("role certificate %+v: %v", id, err)
	}
}

// athenzConf writes the athenz.conf the tools verify with: the ZTS and ZMS public keys as
// the issuer publishes them.
func athenzConf(t *testing.T, e *env, dir string) string {
	t.Helper()
	conf := map[string]any{"zmsUrl": e.base, "ztsUrl": e.base}
	for _, svc := range []string{"zts", "zms"} {
		r := e.call(t, e.client(nil), "GET", "/domain/sys.auth/service/"+svc, nil)
		var si struct{ PublicKeys []map[string]string }
		r.decode(t, &si)
		conf[svc+"PublicKeys"] = si.PublicKeys
	}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "athenz.conf")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestToolAccessToken(t *testing.T) {
	svc := toolPath(t, envSvcCert)
	bin := toolPath(t, envAccessToken)
	e, dir := toolsEnv(t)
	svcCert(t, e, dir, svc, "ops")
	tok := strings.TrimSpace(run(t, dir, bin, "-zts", e.base, "-svc-key-file", "ops.key.pem", "-svc-cert-file", "ops.cert.pem",
		"-svc-cacert-file", "ca.pem", "-domain", "sports", "-roles", "readers,writers", "-token-only"))
	claims, err := athenz.VerifyAccessToken(tok, e.jwks(t), athenz.AccessTokenOptions{Audiences: []string{"sports"}})
	if err != nil || strings.Join(claims.Scopes, ",") != "readers,writers" || claims.Confirmation == nil {
		t.Fatalf("access token claims %+v: %v", claims, err)
	}
	// zts-accesstoken -validate checks the signature with the key from athenz.conf.
	out := run(t, dir, bin, "-validate", "-access-token", tok, "-conf", athenzConf(t, e, dir))
	if !strings.Contains(out, "successfully validated") {
		t.Fatalf("validate: %s", out)
	}
}

func TestToolZPEUpdater(t *testing.T) {
	svc := toolPath(t, envSvcCert)
	bin := toolPath(t, envZPEUpdater)
	e, dir := toolsEnv(t)
	svcCert(t, e, dir, svc, "ops")
	conf := athenzConf(t, e, dir)
	for _, jws := range []bool{false, true} {
		name := map[bool]string{false: "signed_policy_data", true: "jws"}[jws]
		t.Run(name, func(t *testing.T) {
			polDir := filepath.Join(dir, name, "policies")
			zpu := map[string]any{
				"domains": "sports,weather", "policyDir": polDir, "tempPolicyDir": filepath.Join(dir, name, "tmp"),
				"metricsDir": filepath.Join(dir, name, "metrics"), "checkZMSSignature": true, "jwsPolicySupport": jws,
			}
			data, _ := json.Marshal(zpu)
			zpuConf := filepath.Join(dir, name+".zpu.conf")
			if err := os.WriteFile(zpuConf, data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{polDir, filepath.Join(dir, name, "tmp"), filepath.Join(dir, name, "metrics")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"-athenzConf", conf, "-zpuConf", zpuConf, "-logFile", "", "-zts", e.base,
				"-private-key", "ops.key.pem", "-cert-file", "ops.cert.pem", "-cacert", "ca.pem", "-sia-dir", dir}
			run(t, dir, bin, args...)
			for _, d := range []string{"sports", "weather"} {
				pol, err := os.ReadFile(filepath.Join(polDir, d+".pol"))
				if err != nil {
					t.Fatalf("policy file of %s: %v", d, err)
				}
				if !strings.Contains(string(pol), `"signature"`) {
					t.Fatalf("policy file of %s: %s", d, pol)
				}
			}
			// A second run sends the ETag and keeps the files (304).
			run(t, dir, bin, args...)
		})
	}
	// The second runs were answered 304: zpe-updater rebuilt the ETag from the file.
	for _, route := range []string{"signed_policy_data", "jws_policy_data"} {
		if n := e.requests(t, route, "304"); n != 2 {
			t.Errorf("%s 304 answers: %v, want 2", route, n)
		}
	}
}
