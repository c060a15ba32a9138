package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
	"github.com/athenz-mesh/athenz-mesh/policy"
)

// writeSignedPolicy writes <dir>/<domain>.pol as zpe-updater stores it, signed with the
// key in privPEM under keyID.
func writeSignedPolicy(t *testing.T, dir, privPEM, keyID string) {
	t.Helper()
	raw, err := os.ReadFile(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := policy.ParseSigningKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	spd := &athenz.SignedPolicyData{
		PolicyData: athenz.PolicyData{Domain: "shop", Policies: []athenz.SignedPolicy{{
			Name: "shop:policy.read",
			Assertions: []athenz.SignedAssertion{{
				Role: "shop:role.readers", Action: "read", Resource: "shop:items", Effect: "ALLOW",
			}},
		}}},
		Modified: athenz.NewTimestamp(now),
		Expires:  athenz.NewTimestamp(now.Add(24 * time.Hour)),
	}
	signed, err := spd.Sign(key, keyID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shop.pol"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestZTSKeyVerifiesSignedPolicyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir, "zts")
	_, otherPub := writeKeyPair(t, dir, "other")
	domains := filepath.Join(dir, "domains")
	if err := os.Mkdir(domains, 0o755); err != nil {
		t.Fatal(err)
	}
	writeSignedPolicy(t, domains, priv, "zts1")
	check := func(extra ...string) result {
		args := append([]string{"policy"}, extra...)
		args = append(args, "check", "--domains", domains, "--token-domain", "shop", "--roles", "readers",
			"--action", "read", "--resource", "shop:items")
		return runCLI(t, args...)
	}
	tests := []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"no key loads unverified", nil, 0, "allowed by policy read"},
		{"right key", []string{"--zts-key", "zts1=" + pub}, 0, "allowed by policy read"},
		{"wrong key refused", []string{"--zts-key", "zts1=" + otherPub}, 2, "shop.pol"},
		{"unknown key id refused", []string{"--zts-key", "zts2=" + pub}, 2, "zts1"},
		{"malformed flag", []string{"--zts-key", pub}, 2, "want ID=FILE.pem"},
		{"missing key file", []string{"--zts-key", "zts1=" + filepath.Join(dir, "nope.pem")}, 2, "read ZTS key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(tt.flags...).expect(t, tt.code, tt.want)
		})
	}

	// Tampering with the signed file is caught once a key is given.
	pol := filepath.Join(domains, "shop.pol")
	raw, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, []byte(strings.Replace(string(raw), `"action":"read"`, `"action":"*"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	check("--zts-key", "zts1="+pub).expect(t, 2, "shop.pol")
}
