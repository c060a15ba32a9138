package charts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

const examplesDir = "../examples/istio"

// TestIstioWalkthrough checks what examples/istio/README.md installs, short of a live
// cluster: the chart with the walkthrough's values (release "athenz-mesh" in namespace
// "athenz-mesh", as the README runs it), the IstioOperator's mesh config decoded strictly
// into Istio's MeshConfig and matched against the chart's Services, the workloads decoded
// strictly, and the domain files loaded.
func TestIstioWalkthrough(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(examplesDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValues(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := renderRelease(t, vals.AsMap(), "athenz-mesh", "athenz-mesh")
	checkWorkloads(t, r)

	issuerCM := get[*corev1.ConfigMap](t, r, "ConfigMap", "athenz-mesh-issuer")
	authzCM := get[*corev1.ConfigMap](t, r, "ConfigMap", "athenz-mesh-authz")
	icfg := loadIssuer(t, issuerCM.Data["issuer.yaml"])
	acfg := loadAuthz(t, authzCM.Data["authz.yaml"])

	ap := get[*securityv1.AuthorizationPolicy](t, r, "AuthorizationPolicy", "httpbin-athenz")
	if ap.Namespace != "demo" || ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM || ap.Spec.GetSelector().GetMatchLabels()["app"] != "httpbin" {
		t.Errorf("AuthorizationPolicy = %v", &ap.Spec)
	}

	// The IstioOperator's mesh config: Istio's own type, strictly.
	opRaw, err := os.ReadFile(filepath.Join(examplesDir, "istio-operator.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var op struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Profile    string          `json:"profile"`
			MeshConfig json.RawMessage `json:"meshConfig"`
			Values     json.RawMessage `json:"values"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(opRaw, &op); err != nil {
		t.Fatalf("istio-operator.yaml: %v", err)
	}
	if op.Kind != "IstioOperator" || op.APIVersion != "install.istio.io/v1alpha1" {
		t.Errorf("istio-operator.yaml is a %s %s", op.APIVersion, op.Kind)
	}
	var mc meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{}).Unmarshal(op.Spec.MeshConfig, &mc); err != nil {
		t.Fatalf("istio-operator.yaml meshConfig: %v", err)
	}
	if mc.GetTrustDomain() != icfg.Istio.TrustDomain {
		t.Errorf("mesh trustDomain %q, issuer istio.trust_domain %q", mc.GetTrustDomain(), icfg.Istio.TrustDomain)
	}
	pm := mc.GetDefaultConfig().GetProxyMetadata()
	caHost, caPort, _ := strings.Cut(pm["CA_ADDR"], ":")
	if !slices.Contains(icfg.TLS.Hostnames, caHost) || ":"+caPort != icfg.Istio.Listen {
		t.Errorf("CA_ADDR %q: host must be in the issuer's tls.hostnames %v and port its istio.listen %q", pm["CA_ADDR"], icfg.TLS.Hostnames, icfg.Istio.Listen)
	}
	// The providers must be exactly those NOTES.txt prints for this release.
	r.notes = strings.ReplaceAll(r.notes, "\r", "")
	var notes meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{}).Unmarshal(meshConfigSnippet(t, r.notes), &notes); err != nil {
		t.Fatal(err)
	}
	if len(notes.GetExtensionProviders()) != len(mc.GetExtensionProviders()) {
		t.Fatalf("istio-operator.yaml has %d providers, NOTES.txt %d", len(mc.GetExtensionProviders()), len(notes.GetExtensionProviders()))
	}
	for i, p := range mc.GetExtensionProviders() {
		want, _ := protojson.Marshal(notes.GetExtensionProviders()[i])
		got, _ := protojson.Marshal(p)
		if string(got) != string(want) {
			t.Errorf("provider %d:\n istio-operator.yaml %s\n NOTES.txt           %s", i, got, want)
		}
	}
	if acfg.HTTP.PathPrefix != mc.GetExtensionProviders()[1].GetEnvoyExtAuthzHttp().GetPathPrefix() {
		t.Errorf("authz http.path_prefix %q differs from the provider's pathPrefix", acfg.HTTP.PathPrefix)
	}
	var values struct {
		Global struct {
			MultiCluster struct {
				ClusterName string `json:"clusterName"`
			} `json:"multiCluster"`
		} `json:"global"`
	}
	if err := json.Unmarshal(op.Spec.Values, &values); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(icfg.Istio.Clusters, func(c issuerCluster) bool { return c.ID == values.Global.MultiCluster.ClusterName }) {
		t.Errorf("clusterName %q is not among the issuer's istio.clusters", values.Global.MultiCluster.ClusterName)
	}

	// The workloads: strict decoding, and the proxies' CA_ROOT_CA volume annotations.
	wRaw, err := os.ReadFile(filepath.Join(examplesDir, "workload.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var deployments int
	for _, m := range releaseutil.SplitManifests(string(wRaw)) {
		obj, err := decodeStrict([]byte(m))
		if err != nil {
			t.Fatalf("workload.yaml: %v\n%s", err, m)
		}
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		deployments++
		a := d.Spec.Template.Annotations
		var vols map[string]corev1.VolumeSource
		var mounts map[string]corev1.VolumeMount
		if err := yaml.UnmarshalStrict([]byte(a["sidecar.istio.io/userVolume"]), &vols); err != nil {
			t.Errorf("%s userVolume: %v", d.Name, err)
		}
		if err := yaml.UnmarshalStrict([]byte(a["sidecar.istio.io/userVolumeMount"]), &mounts); err != nil {
			t.Errorf("%s userVolumeMount: %v", d.Name, err)
		}
		v, m := vols["athenz-mesh-trust"], mounts["athenz-mesh-trust"]
		if v.ConfigMap == nil || v.ConfigMap.Name != "athenz-mesh-trust" || m.MountPath+"/roots.pem" != pm["CA_ROOT_CA"] {
			t.Errorf("%s: the proxy does not get the issuer's roots at CA_ROOT_CA %q (volume %+v, mount %+v)", d.Name, pm["CA_ROOT_CA"], v, m)
		}
		if d.Namespace != ap.Namespace {
			t.Errorf("%s is in %s, the policy in %s", d.Name, d.Namespace, ap.Namespace)
		}
	}
	if deployments != 2 {
		t.Errorf("%d Deployments in workload.yaml, want httpbin and curl", deployments)
	}

	// The domain files load, and admit the Istio CA API's provider.
	domains, err := policy.LoadDir(filepath.Join(examplesDir, "domains"))
	if err != nil {
		t.Fatal(err)
	}
	if len(domains) != 1 || domains[0].Name != "demo" {
		t.Fatalf("domains = %v", domains)
	}
	if !strings.Contains(mustRead(t, filepath.Join(examplesDir, "domains", "demo.yaml")), "memberName: "+icfg.Istio.Provider) {
		t.Errorf("demo.yaml does not let %s launch services", icfg.Istio.Provider)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
