package ca

// CSRs made by Athenz's own SIA code (libs/go/sia/util v1.12.13) must pass the checks, and
// the certificates issued for them must read back with athenzutils, the extractor
// Athenz's Go tools use. Test-only imports.

import (
	"crypto/x509"
	"testing"

	"github.com/AthenZ/athenz/libs/go/athenzutils"
	siautil "github.com/AthenZ/athenz/libs/go/sia/util"
)

func TestSIACSRs(t *testing.T) {
	t.Parallel()
	ca := mustSharedCA(t)
	key := testKeys().rsa2048
	t.Run("service", func(t *testing.T) {
		t.Parallel()
		csrPEM, err := siautil.GenerateSvcCertCSR(key, &siautil.SvcCertReqOptions{
			Country: "US", OrgName: "Oath Inc.", Domain: "sports.prod", Service: "api", CommonName: "sports.prod.api",
			InstanceId: "pod-1234", Provider: "athenz.k8s", Hostname: "api-0.api.sports.svc.cluster.local",
			ZtsDomains: []string{"athenz.cloud"}, WildCardDnsName: true, InstanceIdSanDNS: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ParseCSR([]byte(csrPEM))
		if err != nil {
			t.Fatalf("ParseCSR: %v", err)
		}
		id := svcIdentity()
		id.AllowWildcardDNS = true
		id.Subject = SubjectPolicy{Organizations: []string{"Oath Inc."}, OrganizationalUnits: []string{"athenz.k8s"}, Countries: []string{"US"}}
		req, err := CheckServiceCSR(csr, id)
		if err != nil {
			t.Fatalf("CheckServiceCSR: %v", err)
		}
		is, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := athenzutils.ExtractServicePrincipal(*is.Certificate); err != nil || p != "sports.prod.api" {
			t.Errorf("athenzutils reads principal %q (%v)", p, err)
		}
		if i, err := athenzutils.ExtractInstanceId(*is.Certificate); err != nil || i != "pod-1234" {
			t.Errorf("athenzutils reads instance id %q (%v)", i, err)
		}
		if got := is.Certificate.Subject.String(); got != "CN=sports.prod.api,OU=athenz.k8s,O=Oath Inc.,C=US" {
			t.Errorf("subject = %s", got)
		}
		if err := verifyLeaf(ca, is, testNow, x509.ExtKeyUsageServerAuth); err != nil {
			t.Error(err)
		}
	})
	t.Run("role", func(t *testing.T) {
		t.Parallel()
		csrPEM, err := siautil.GenerateRoleCertCSR(key, &siautil.RoleCertReqOptions{
			Domain: "weather", Service: "api", RoleName: "sports.prod:role.readers",
			InstanceId: "i-0abc", Provider: "athenz.aws", EmailDomain: "athenz.cloud",
		})
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ParseCSR([]byte(csrPEM))
		if err != nil {
			t.Fatalf("ParseCSR: %v", err)
		}
		req, err := CheckRoleCSR(csr, roleIdentity())
		if err != nil {
			t.Fatalf("CheckRoleCSR: %v", err)
		}
		is, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := athenzutils.ExtractServicePrincipal(*is.Certificate); err != nil || p != "weather.api" {
			t.Errorf("athenzutils reads principal %q (%v)", p, err)
		}
		if d, r, err := athenzutils.ParseAthenzRoleName(is.Certificate.Subject.CommonName); err != nil || d != "sports.prod" || r != "readers" {
			t.Errorf("athenzutils reads role %q %q (%v)", d, r, err)
		}
	})
}
