package athenz_test

// N-tokens and role tokens against the real Athenz v1.12.13 code: the zmssvctoken
// builder, validators and verifier, the ZTS client schema, and tokens that Athenz's own
// sources document. Test-only imports.

import (
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AthenZ/athenz/clients/go/zts"
	"github.com/AthenZ/athenz/libs/go/zmssvctoken"
	"github.com/ardielle/ardielle-go/rdl"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// The zmssvctoken builder and validators read the wall clock, so these tests issue
// tokens at the current second and verify with time.Now(); the tokens live an hour, far
// longer than any test run.

func TestNTokensInteroperateWithZMSSvcToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa p256", testP256()}, {"rsa 2048", testRSA2048()}, {"ecdsa p384", testP384()}} {
		t.Run(tc.name, func(t *testing.T) {
			builder, err := zmssvctoken.NewTokenBuilder("sports.prod", "api", pkcs8PEM(t, tc.key), "v1")
			if err != nil {
				t.Fatal(err)
			}
			builder.SetHostname("host1.example.com")
			builder.SetIPAddress("10.0.0.1")
			builder.SetKeyService("zts")
			theirs, err := builder.Token().Value()
			if err != nil {
				t.Fatal(err)
			}
			n, err := athenz.ParseNToken(theirs)
			if err != nil {
				t.Fatalf("we cannot parse a zmssvctoken token: %v", err)
			}
			if err := n.Verify(tc.key.Public(), time.Now(), athenz.NTokenOptions{}); err != nil {
				t.Fatalf("we reject a zmssvctoken token: %v", err)
			}
			if n.Principal() != "sports.prod.api" || n.KeyID != "v1" || n.KeyService != "zts" || n.Hostname != "host1.example.com" || n.IP != "10.0.0.1" {
				t.Errorf("parsed %+v", n)
			}

			now := time.Now().Truncate(time.Second)
			ours, err := (&athenz.NToken{
				Domain: "sports.prod", Name: "api", KeyID: "v1", KeyService: "zms", Hostname: "host1.example.com",
				IP: "10.0.0.1", IssueTime: now, ExpiryTime: now.Add(time.Hour),
			}).Sign(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			validator, err := zmssvctoken.NewPubKeyTokenValidator([]byte(publicPEM(t, tc.key.Public())))
			if err != nil {
				t.Fatal(err)
			}
			got, err := validator.Validate(ours)
			if err != nil {
				t.Fatalf("zmssvctoken rejects our token: %v", err)
			}
			if got.Version != "S1" || got.Domain != "sports.prod" || got.Name != "api" || got.KeyVersion != "v1" ||
				got.KeyService != "zms" || got.Hostname != "host1.example.com" || got.IPAddress != "10.0.0.1" ||
				!got.GenerationTime.Equal(now) || !got.ExpiryTime.Equal(now.Add(time.Hour)) {
				t.Errorf("zmssvctoken read %s", got)
			}
			if _, err := validator.Validate(strings.Replace(ours, "n=api", "n=web", 1)); err == nil {
				t.Error("zmssvctoken accepted a tampered token")
			}
		})
	}
}

// TestNTokenKeySourceMatchesZMSSvcToken lets zmssvctoken's fetching validator pick the
// public key for tokens we sign, from a fake ZTS, and requires it to ask for exactly the
// key KeySource names.
func TestNTokenKeySourceMatchesZMSSvcToken(t *testing.T) {
	key := testP256()
	entry, err := athenz.EncodePublicKeyEntry(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		id := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		_ = json.NewEncoder(w).Encode(map[string]string{"key": entry, "id": id})
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name                   string
		version, domain, name_ string
		keyService             string
	}{
		{"service", "S1", "sports", "api", ""},
		{"service signed by zts", "S1", "sports", "api", "zts"},
		{"service signed by zms", "S1", "sports", "api", "zms"},
		{"user", "U1", "user", "joe", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			n := &athenz.NToken{Version: tc.version, Domain: tc.domain, Name: tc.name_, KeyID: "k7", KeyService: tc.keyService, IssueTime: now, ExpiryTime: now.Add(time.Hour)}
			tok, err := n.Sign(key)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			paths = nil
			mu.Unlock()
			v := zmssvctoken.NewTokenValidator(zmssvctoken.ValidationConfig{ZTSBaseUrl: srv.URL + "/zts/v1"})
			if _, err := v.Validate(tok); err != nil {
				t.Fatalf("zmssvctoken rejects our token: %v", err)
			}
			d, s, k := n.KeySource()
			want := "/zts/v1/domain/" + d + "/service/" + s + "/publickey/" + k
			mu.Lock()
			defer mu.Unlock()
			if len(paths) != 1 || paths[0] != want {
				t.Errorf("zmssvctoken fetched %v, KeySource says %s", paths, want)
			}
		})
	}
}

// TestRoleTokenVerifiesLikeZTSRoleTokenTool checks our role tokens the way
// `zts-roletoken -validate` does (its code is in package main): split at the first ";s="
// and verify with zmssvctoken's verifier.
func TestRoleTokenVerifiesLikeZTSRoleTokenTool(t *testing.T) {
	for _, key := range []crypto.Signer{testP256(), testRSA2048()} {
		tok, err := testRoleToken().Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		verifier, err := zmssvctoken.NewVerifier([]byte(publicPEM(t, key.Public())))
		if err != nil {
			t.Fatal(err)
		}
		usig := strings.SplitN(tok, ";s=", 2)
		if err := verifier.Verify(usig[0], usig[1]); err != nil {
			t.Errorf("%T: zmssvctoken rejects our role token signature: %v", key, err)
		}
		var rt zts.RoleToken
		if err := json.Unmarshal([]byte(mustJSON(t, map[string]any{"token": tok, "expiryTime": testNow.Add(2 * time.Hour).Unix()})), &rt); err != nil || rt.Token != tok {
			t.Errorf("ZTS client RoleToken: %v", err)
		}
	}
}

// TestNTokenFitsZTSSignedToken: the Go ZTS client validates a returned serviceToken
// against the SignedToken pattern, which has no ':'. An IPv6 "i=" field breaks it.
func TestNTokenFitsZTSSignedToken(t *testing.T) {
	for _, tc := range []struct {
		ip    string
		valid bool
	}{{"10.0.0.1", true}, {"", true}, {"2001:db8::1", false}} {
		tok := signNToken(t, testRSA2048(), func(n *athenz.NToken) { n.IP = tc.ip })
		if got := rdl.Validate(zts.ZTSSchema(), "SignedToken", tok).Valid; got != tc.valid {
			t.Errorf("ip %q: SignedToken valid = %v, want %v", tc.ip, got, tc.valid)
		}
	}
}

// athenzModuleDirOnce asks the go tool, once, where the Athenz module source is.
var athenzModuleDirOnce = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/AthenZ/athenz").Output()
	return strings.TrimSpace(string(out)), err
})

// athenzModuleDir returns the directory of the Athenz module source, or skips.
func athenzModuleDir(t *testing.T) string {
	t.Helper()
	dir, err := athenzModuleDirOnce()
	if err != nil || dir == "" {
		t.Skipf("Athenz module source not available: %v", err)
	}
	return dir
}

// TestDocumentedAthenzTokensParse reads the signed role tokens and n-tokens that
// Athenz's Java tests and Go client example document and requires each to parse.
func TestDocumentedAthenzTokensParse(t *testing.T) {
	dir := athenzModuleDir(t)
	tokenRE := regexp.MustCompile(`v=[SUZ]1;[A-Za-z0-9._,;=:-]*?;s=[A-Za-z0-9._-]+`)
	var found []string
	for _, f := range []string{
		"libs/java/auth_core/src/test/java/com/yahoo/athenz/auth/token/TokenTest.java",
		"clients/go/zts/examples/get-role-token/example.md",
	} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, tokenRE.FindAllString(string(b), -1)...)
	}
	if len(found) < 5 {
		t.Fatalf("found only %d documented tokens", len(found))
	}
	sawExample := false
	for _, s := range found {
		if strings.HasPrefix(s, "v=Z1") {
			r, err := athenz.ParseRoleToken(s)
			if err != nil {
				t.Errorf("documented role token %.60q...: %v", s, err)
				continue
			}
			if r.Domain == "home.palakas" {
				sawExample = true
				if !r.CompleteRoleSet || r.KeyID != "aws.prod.us-west-2.0" || r.Principal != "home.palakas.helloworld" {
					t.Errorf("example.md token read as %+v", r)
				}
			}
			continue
		}
		if _, err := athenz.ParseNToken(s); err != nil {
			t.Errorf("documented n-token %.60q...: %v", s, err)
		}
	}
	if !sawExample {
		t.Error("the ZTS client example role token was not found")
	}
}
