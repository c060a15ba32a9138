package athenz_test

// Certificate identities against athenzutils (v1.12.13), the extractor Athenz's Go tools
// and SIA use: ExtractServicePrincipal and ExtractInstanceId. Test-only import.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/AthenZ/athenz/libs/go/athenzutils"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

// TestCertIdentityAgreesWithAthenzUtils issues well-formed service and role
// certificates and requires athenzutils to read the same principal and instance id.
func TestCertIdentityAgreesWithAthenzUtils(t *testing.T) {
	tests := []struct {
		name string
		spec certSpec
	}{
		{"service, uri instance id", certSpec{cn: "sports.prod.api", uris: []string{athenz.SpiffeID("", "", "sports.prod", "api"), athenz.InstanceIDURI("sys.auth.zts", "i-1")}}},
		{"service, dns instance id", certSpec{cn: "sports.api", dns: []string{athenz.ServiceDNSName("sports", "api", "athenz.cloud"), athenz.InstanceIDDNSName("pod-7", "athenz.cloud")}}},
		{"service, trust domain spiffe", certSpec{cn: "sports.api", uris: []string{athenz.SpiffeID("athenz.io", "prod", "sports", "api")}}},
		{"role cert, email", certSpec{cn: "sports:role.readers", emails: []string{"media.api@athenz.cloud"}, uris: []string{athenz.RoleSpiffeID("", "sports", "readers"), athenz.InstanceIDURI("p.q", "x:y")}}},
		{"role cert, email and uri", certSpec{cn: "sports:role.readers", emails: []string{"media.api@athenz.cloud"}, uris: []string{athenz.PrincipalURI("media.api")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := makeCert(t, tc.spec)
			ours, err := athenz.PrincipalFromCertificate(cert)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := athenzutils.ExtractServicePrincipal(*cert)
			if err != nil || theirs != ours.Principal {
				t.Errorf("athenzutils principal %q (%v), ours %q", theirs, err, ours.Principal)
			}
			id, err := athenzutils.ExtractInstanceId(*cert)
			if (err == nil) != (ours.InstanceID != "") || id != ours.InstanceID {
				t.Errorf("athenzutils instance id %q (%v), ours %q", id, err, ours.InstanceID)
			}
			d, s, err := athenzutils.ParsePrincipal(ours.Principal)
			if err != nil || d != ours.Domain || s != ours.Service {
				t.Errorf("athenzutils.ParsePrincipal = %q, %q, %v; ours %q, %q", d, s, err, ours.Domain, ours.Service)
			}
		})
	}
}

// TestAthenzUtilsTestCertificates reads the certificates in athenzutils' own test data.
// Where both extractors accept a certificate they must agree; where they differ, the
// difference is one of the deliberate ones listed.
func TestAthenzUtilsTestCertificates(t *testing.T) {
	dir := filepath.Join(athenzModuleDir(t), "libs/go/athenzutils/data")
	tests := []struct {
		file         string
		ours, theirs string // principal, or "" for an error
		instanceID   string // ours, when ours succeeds
		why          string
	}{
		{"athenz_instanceid_uri.cert", "athenz.api", "athenz.api", "id-001", ""},
		{"valid_email_x509.cert", "athens.zts", "athens.zts", "", ""},
		{"service_identity2.cert", "athenz.syncer", "athenz.syncer", "", ""},
		{"athenz.examples.uri-hostname-only.pem", "athenz.examples.httpd", "athenz.examples.httpd", "", ""},
		{"multiple_email_x509.cert", "", "", "", ""},
		{"invalid_email_x509.cert", "", "", "", ""},
		{"no_email_x509.cert", "", "", "", ""},
		{"no_cn_x509.cert", "athenz.api", "", "1001", "no CN: we read the principal from the Athenz SPIFFE URI, as Envoy does"},
		{"service_identity1.cert", "", "athenz.production", "", "its SPIFFE URI (spiffe://athenz/domain1/service1) is no Athenz form; ZTS would not issue it"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cert, err := athenzutils.LoadX509Certificate(filepath.Join(dir, tc.file))
			if err != nil {
				if os.IsNotExist(err) {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			ours, err := athenz.PrincipalFromCertificate(cert)
			if ours.Principal != tc.ours || (err == nil) != (tc.ours != "") {
				t.Errorf("ours: %q, %v; want %q", ours.Principal, err, tc.ours)
			}
			if err == nil && ours.InstanceID != tc.instanceID {
				t.Errorf("instance id %q, want %q", ours.InstanceID, tc.instanceID)
			}
			theirs, err := athenzutils.ExtractServicePrincipal(*cert)
			if err != nil {
				theirs = ""
			}
			if theirs != tc.theirs {
				t.Errorf("athenzutils: %q, %v; want %q", theirs, err, tc.theirs)
			}
			if (tc.ours != tc.theirs) != (tc.why != "") {
				t.Errorf("a difference must be explained, and only a difference")
			}
		})
	}
}
