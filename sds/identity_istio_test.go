package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athenz-mesh/athenz-mesh/sds/sdstest"
)

// TestNodeIstioRecord checks that, in Istio mode, an identity is served for one service
// account at a time on a node: a pod of another service account mapped to the same
// identity is refused while a pod of the first one still has its token on the node.
func TestNodeIstioRecord(t *testing.T) {
	dir := t.TempDir()
	n := &NodeIdentities{Istio: &NodeIstio{}, TokenPath: filepath.Join(dir, PodUIDPlaceholder)}
	api := Pod{UID: "a", Namespace: "sports", ServiceAccount: "api"}
	web := Pod{UID: "w", Namespace: "sports", ServiceAccount: "web"}
	api2 := Pod{UID: "a2", Namespace: "sports", ServiceAccount: "api"}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name    string
		pod     Pod
		wantErr string
	}{
		{"first pod binds", api, ""},
		{"same service account", api2, ""},
		{"other service account refused while the pod lives", web, "already serves to service account sports/api (pod a)"},
	} {
		err := n.Record(step.pod, "sports.api")
		if (err == nil) != (step.wantErr == "") || (err != nil && !strings.Contains(err.Error(), step.wantErr)) {
			t.Fatalf("%s: error %v, want %q", step.name, err, step.wantErr)
		}
	}
	if err := os.Remove(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if err := n.Record(web, "sports.api"); err != nil {
		t.Fatalf("the first service account's pods are gone, yet: %v", err)
	}
	if got := n.podsOf("sports.api"); strings.Join(got, ",") != "w" {
		t.Errorf("pods %v, want only the new service account's", got)
	}
	if b, ok := n.serviceAccountOf("w"); !ok || b.serviceAccount != "web" {
		t.Errorf("service account of w: %+v %v", b, ok)
	}
}

// TestIstioChain checks how a CreateCertificate answer is read: root last, to the bundle.
func TestIstioChain(t *testing.T) {
	ca, err := sdstest.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://cluster.local/ns/sports/sa/api"
	leaf, err := ca.Issue("sports.api", id, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(raw []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw}) }
	ok := [][]byte{enc(leaf.Cert.Raw), enc(ca.Cert.Raw)}
	for _, tc := range []struct {
		name    string
		pems    [][]byte
		id      string
		key     bool // the leaf's key, else another
		wantErr string
	}{
		{"leaf then root", ok, id, true, ""},
		{"root alone", ok[1:], id, true, "answered 1 certificates"},
		{"not PEM", [][]byte{[]byte("x"), ok[1]}, id, true, "not PEM"},
		{"another key", ok, id, false, "not for the key sent"},
		{"another SPIFFE ID", ok, "spiffe://cluster.local/ns/sports/sa/web", true, "want only spiffe://cluster.local/ns/sports/sa/web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := leaf.Key
			if !tc.key {
				key = other
			}
			chain, root, err := istioChain(tc.pems, key, tc.id)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 1 || !chain[0].Equal(leaf.Cert) || !root.Equal(ca.Cert) {
				t.Errorf("chain %d certificates, root %s", len(chain), root.Subject)
			}
		})
	}
}
