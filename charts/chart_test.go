package charts

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/athenz-mesh/athenz-mesh/authz"
	"github.com/athenz-mesh/athenz-mesh/issuer"
	"github.com/athenz-mesh/athenz-mesh/sds"
)

// Object names for release "am": the full name is "am-athenz-mesh".
const (
	issuerName = "am-athenz-mesh-issuer"
	authzName  = "am-athenz-mesh-authz"
	agentName  = "am-athenz-mesh-agent"
)

// Value sets shared by the cases.
const (
	haIssuer = `
issuer:
  replicas: 3
  store:
    type: postgres
    postgres:
      dsn: "sslmode=verify-full search_path=athenz_mesh"
      existingSecret: athenz-mesh-postgres
  tls:
    extraHostnames: [zts.example.com]
  config:
    tokens:
      issuer: https://zts.example.com/zts/v1
    store: {max_conns: 20, prune_interval: 30m}
    certificates:
      dns_suffixes: [athenz.cloud, svc.example.com]
      default_validity: 12h
      max_validity: 168h
authz:
  enabled: false
`
	meshValues = `
identityMapping:
  entries:
    - {namespace: bookinfo, service_account: "*", domain: bookinfo}
  rule: {domain_prefix: "k8s.", separator: "--"}
domains:
  files:
    bookinfo.yaml: |
      name: bookinfo
      roles:
        - name: bookinfo:role.readers
          roleMembers: [{memberName: bookinfo.productpage}]
issuer:
  istioCA: {enabled: true, maxValidity: 24h}
agent:
  enabled: true
  config:
    node:
      kubelet: {insecure_skip_verify: true}
    log: {level: debug}
authz:
  replicas: 3
  config:
    decision:
      mapping:
        default_domain: bookinfo
      explain:
        principals: [bookinfo.admin]
    decision_log: {output: stdout, allow_sample_rate: 0.1}
istio:
  authorizationPolicies:
    - name: reviews-athenz
      namespace: bookinfo
      selector: {matchLabels: {app: reviews}}
    - name: ratings-athenz
      namespace: bookinfo
      provider: http
      selector: {matchLabels: {app: ratings}}
      rules:
        - to: [{operation: {paths: ["/ratings/*"], notMethods: [OPTIONS]}}]
`
	authzOnly = `
issuer: {enabled: false}
trust:
  existingConfigMap: ""
  rootsPEM: |
    -----BEGIN CERTIFICATE-----
    MIIBfake
    -----END CERTIFICATE-----
  bundlePublicKeyPEM: |
    -----BEGIN PUBLIC KEY-----
    MFkwfake
    -----END PUBLIC KEY-----
authz:
  issuerURL: https://zts.example.com:4443/zts/v1
  http: {enabled: false}
  accessTokens: false
  replicas: 1
`
)

func TestRender(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values string
		check  func(t *testing.T, r *release)
	}{
		{
			name:   "defaults",
			values: "",
			check: func(t *testing.T, r *release) {
				d := get[*appsv1.Deployment](t, r, "Deployment", issuerName)
				if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("issuer: replicas %d strategy %q, want 1 and Recreate (SQLite)", *d.Spec.Replicas, d.Spec.Strategy.Type)
				}
				get[*corev1.PersistentVolumeClaim](t, r, "PersistentVolumeClaim", issuerName)
				get[*appsv1.Deployment](t, r, "Deployment", authzName)
				get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", authzName)
				if r.has("PodDisruptionBudget", issuerName) {
					t.Error("a PodDisruptionBudget for one issuer replica blocks node drains")
				}
				if r.has("DaemonSet", agentName) {
					t.Error("the agent is off by default")
				}
				crb := get[*rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding", issuerName+"-"+namespace)
				if crb.RoleRef.Name != "system:auth-delegator" {
					t.Errorf("issuer binding to %q, want system:auth-delegator", crb.RoleRef.Name)
				}
				cfg := issuerConfig(t, r)
				if cfg.Store.DSN != "" || cfg.CA.Dir != "/etc/athenz-mesh/ca" || !cfg.CA.AllowGroupReadableKey {
					t.Errorf("issuer store/ca = %+v / %+v", cfg.Store, cfg.CA)
				}
				if len(cfg.Providers) != 1 || cfg.Providers[0].K8s == nil || cfg.Providers[0].K8s.TokenReview == nil {
					t.Errorf("providers = %+v, want the k8s provider with token_review", cfg.Providers)
				}
				if want := "https://" + issuerName + "." + namespace + ".svc:4443/zts/v1"; cfg.Tokens.Issuer != want {
					t.Errorf("tokens.issuer = %q, want %q", cfg.Tokens.Issuer, want)
				}
				if !slices.Contains(cfg.TLS.Hostnames, issuerName+"."+namespace+".svc") {
					t.Errorf("tls.hostnames %v lack the Service name", cfg.TLS.Hostnames)
				}
				a := authzConfig(t, r)
				if a.Bundle.URL != cfg.Tokens.Issuer+"/bundle" || len(a.Bundle.VerificationKeys) != 1 {
					t.Errorf("authz bundle = %+v", a.Bundle)
				}
				if a.Credentials.AccessToken.Issuer != cfg.Tokens.Issuer {
					t.Errorf("authz access_token.issuer %q, issuer's tokens.issuer %q", a.Credentials.AccessToken.Issuer, cfg.Tokens.Issuer)
				}
				if len(ofKind[*securityv1.AuthorizationPolicy](r, "AuthorizationPolicy")) != 0 {
					t.Error("AuthorizationPolicies rendered without being asked for")
				}
			},
		},
		{
			name:   "issuer only with SQLite",
			values: "authz: {enabled: false}\nissuer:\n  store:\n    sqlite: {size: 5Gi, storageClassName: fast}\n  ca: {existingSecret: \"\"}\n  keys: {existingSecret: \"\"}\n",
			check: func(t *testing.T, r *release) {
				pvc := get[*corev1.PersistentVolumeClaim](t, r, "PersistentVolumeClaim", issuerName)
				if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "5Gi" || *pvc.Spec.StorageClassName != "fast" {
					t.Errorf("claim %s of class %v", q.String(), pvc.Spec.StorageClassName)
				}
				if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
					t.Error("the database claim must survive an uninstall")
				}
				if r.has("Deployment", authzName) || r.has("Service", authzName) {
					t.Error("authz rendered while disabled")
				}
				cfg := issuerConfig(t, r)
				if !cfg.CA.Create || cfg.Keys.ZTS.File != "" {
					t.Errorf("without Secrets the issuer must create its CA and keys: ca %+v keys %+v", cfg.CA, cfg.Keys)
				}
				d := get[*appsv1.Deployment](t, r, "Deployment", issuerName)
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Secret != nil {
						t.Errorf("volume %s mounts Secret %s", v.Name, v.Secret.SecretName)
					}
				}
				if !strings.Contains(r.notes, "Development CA") {
					t.Error("NOTES.txt does not warn about the development CA")
				}
				if strings.Contains(r.notes, "extensionProviders") {
					t.Error("NOTES.txt prints the mesh config without authz")
				}
			},
		},
		{
			name:   "HA issuer with PostgreSQL",
			values: haIssuer,
			check: func(t *testing.T, r *release) {
				d := get[*appsv1.Deployment](t, r, "Deployment", issuerName)
				if *d.Spec.Replicas != 3 || d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
					t.Errorf("replicas %d strategy %q", *d.Spec.Replicas, d.Spec.Strategy.Type)
				}
				if r.has("PersistentVolumeClaim", issuerName) {
					t.Error("a claim rendered for PostgreSQL")
				}
				c := d.Spec.Template.Spec.Containers[0]
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "athenz-mesh-postgres" {
					t.Errorf("envFrom = %+v, want the libpq Secret", c.EnvFrom)
				}
				pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", issuerName)
				if pdb.Spec.MaxUnavailable.IntValue() != 1 {
					t.Errorf("PDB maxUnavailable %v", pdb.Spec.MaxUnavailable)
				}
				cfg := issuerConfig(t, r)
				if cfg.Store.DSN != "sslmode=verify-full search_path=athenz_mesh" || cfg.Store.MaxConns != 20 {
					t.Errorf("store = %+v", cfg.Store)
				}
				if cfg.Tokens.Issuer != "https://zts.example.com/zts/v1" {
					t.Errorf("tokens.issuer %q: the user's value must win", cfg.Tokens.Issuer)
				}
				if !slices.Contains(cfg.TLS.Hostnames, "zts.example.com") {
					t.Errorf("tls.hostnames %v", cfg.TLS.Hostnames)
				}
				if cfg.Keys.ZTS.File != "/etc/athenz-mesh/keys/zts.key.pem" || cfg.Keys.Bundle.File != "/etc/athenz-mesh/keys/bundle.key.pem" {
					t.Errorf("keys = %+v", cfg.Keys)
				}
			},
		},
		{
			name:   "node agent, authz and Istio policies",
			values: meshValues,
			check: func(t *testing.T, r *release) {
				ds := get[*appsv1.DaemonSet](t, r, "DaemonSet", agentName)
				spec := ds.Spec.Template.Spec
				if !spec.HostPID {
					t.Error("node mode needs hostPID to resolve callers' pids")
				}
				var sockets *corev1.Volume
				for i := range spec.Volumes {
					if spec.Volumes[i].Name == "sockets" {
						sockets = &spec.Volumes[i]
					}
				}
				if sockets == nil || sockets.HostPath == nil || sockets.HostPath.Path != "/run/athenz-mesh/sockets" {
					t.Fatalf("socket volume = %+v, want hostPath /run/athenz-mesh/sockets", sockets)
				}
				if !mounted(spec.Containers[0], "sockets", "/run/athenz-mesh/sockets") {
					t.Error("the socket directory is not mounted in the agent")
				}
				cr := get[*rbacv1.ClusterRole](t, r, "ClusterRole", agentName+"-"+namespace)
				if len(cr.Rules) != 2 || !containsAll(cr.Rules[0].Verbs, "get", "list") || !slices.Contains(cr.Rules[0].Resources, "pods") {
					t.Errorf("agent rules = %+v, want get/list on pods", cr.Rules)
				}
				get[*rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding", agentName+"-"+namespace)

				cm := get[*corev1.ConfigMap](t, r, "ConfigMap", "am-athenz-mesh-domains")
				if !strings.Contains(cm.Data["bookinfo.yaml"], "bookinfo:role.readers") {
					t.Errorf("domains ConfigMap = %v", cm.Data)
				}
				cfg := issuerConfig(t, r)
				m := cfg.Providers[0].K8s.Mapping
				if d, s, ok := m.Map("bookinfo", "reviews"); !ok || d != "bookinfo" || s != "reviews" {
					t.Errorf("issuer mapping of bookinfo/reviews = %q %q %v", d, s, ok)
				}
				if cfg.Istio.Listen != ":15012" || len(cfg.Istio.Clusters) != 1 || cfg.Istio.Clusters[0].ID != "Kubernetes" || cfg.Istio.Clusters[0].TokenReview == nil {
					t.Errorf("issuer istio = %+v", cfg.Istio)
				}
				if d, s, ok := cfg.Istio.Mapping.Map("bookinfo", "ratings"); !ok || d != "bookinfo" || s != "ratings" {
					t.Errorf("issuer istio mapping of bookinfo/ratings = %q %q %v", d, s, ok)
				}
				isvc := get[*corev1.Service](t, r, "Service", issuerName)
				if !slices.ContainsFunc(isvc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 15012 && p.Name == "grpc-istio-ca" }) {
					t.Errorf("issuer Service ports %+v lack the Istio CA", isvc.Spec.Ports)
				}
				ag := agentConfig(t, r)
				if ag.Mode != "node" || ag.Node == nil || ag.Node.Provider != cfg.Providers[0].Name || !ag.Node.Kubelet.InsecureSkipVerify {
					t.Errorf("agent = %+v node %+v", ag, ag.Node)
				}
				if d, s, ok := ag.Node.Mapping.Map("bookinfo", "reviews"); !ok || d != "bookinfo" || s != "reviews" {
					t.Errorf("agent mapping of bookinfo/reviews = %q %q %v", d, s, ok)
				}
				if ag.Issuer.URL != cfg.Tokens.Issuer || ag.Certificates.SpiffeTrustDomain != cfg.Certificates.SpiffeTrustDomain {
					t.Errorf("agent issuer %q td %q; issuer %q td %q", ag.Issuer.URL, ag.Certificates.SpiffeTrustDomain, cfg.Tokens.Issuer, cfg.Certificates.SpiffeTrustDomain)
				}
				if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
					t.Error("node mode reads the kubelet on 127.0.0.1 and must resolve cluster names")
				}
				a := authzConfig(t, r)
				if d, s, ok := a.Decision.Mapping.Mapping().IstioService("bookinfo", "reviews"); !ok || d != "bookinfo" || s != "reviews" {
					t.Errorf("authz mapping of bookinfo/reviews = %q %q %v", d, s, ok)
				}
				if a.Decision.Mapping == nil || a.Decision.Mapping.DefaultDomain != "bookinfo" || a.Listen.HTTP != ":9193" || a.HTTP.PathPrefix != "/authz" {
					t.Errorf("authz = %+v", a)
				}

				aps := ofKind[*securityv1.AuthorizationPolicy](r, "AuthorizationPolicy")
				if len(aps) != 2 {
					t.Fatalf("%d AuthorizationPolicies, want 2", len(aps))
				}
				providers := meshProviders(t, r)
				for _, ap := range aps {
					if ap.Namespace != "bookinfo" || ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
						t.Errorf("%s: namespace %q action %v", ap.Name, ap.Namespace, ap.Spec.GetAction())
					}
					name := ap.Spec.GetProvider().GetName()
					if _, ok := providers[name]; !ok {
						t.Errorf("%s: provider %q is not in NOTES.txt's extensionProviders %v", ap.Name, name, providers)
					}
				}
				ratings := get[*securityv1.AuthorizationPolicy](t, r, "AuthorizationPolicy", "ratings-athenz")
				if ratings.Spec.GetProvider().GetName() != "athenz-mesh-http" || ratings.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0] != "/ratings/*" {
					t.Errorf("ratings policy = %v", &ratings.Spec)
				}
				reviews := get[*securityv1.AuthorizationPolicy](t, r, "AuthorizationPolicy", "reviews-athenz")
				if len(reviews.Spec.GetRules()) != 1 || reviews.Spec.GetSelector().GetMatchLabels()["app"] != "reviews" {
					t.Errorf("reviews policy = %v, want one empty rule for app=reviews", &reviews.Spec)
				}
			},
		},
		{
			name:   "node agent through the Istio CA API",
			values: strings.Replace(meshValues, "agent:\n  enabled: true\n", "agent:\n  enabled: true\n  istioCA: {enabled: true}\n", 1),
			check: func(t *testing.T, r *release) {
				cfg := issuerConfig(t, r)
				ag := agentConfig(t, r)
				ic := ag.Node.IstioCA
				if ic == nil {
					t.Fatal("agent.istioCA.enabled rendered no node.istio_ca")
				}
				if want := "am-athenz-mesh-issuer." + namespace + ".svc:15012"; ic.Address != want {
					t.Errorf("node.istio_ca.address %q, want %q", ic.Address, want)
				}
				if !slices.Contains(cfg.TLS.Hostnames, strings.Split(ic.Address, ":")[0]) {
					t.Errorf("the issuer's TLS names %v lack the agent's Istio CA host %q", cfg.TLS.Hostnames, ic.Address)
				}
				if !slices.Contains(cfg.Istio.Audiences, ic.Audience) || ic.Audience != "istio-ca" {
					t.Errorf("agent audience %q, issuer audiences %v", ic.Audience, cfg.Istio.Audiences)
				}
				if ic.ClusterID != cfg.Istio.Clusters[0].ID || ic.TrustDomain != cfg.Istio.TrustDomain {
					t.Errorf("agent cluster %q td %q; issuer %+v", ic.ClusterID, ic.TrustDomain, cfg.Istio)
				}
				if ag.Node.TokenPath != "" {
					t.Errorf("node.token_path %q, want the default (Istio's istio-token volume)", ag.Node.TokenPath)
				}
				if !strings.Contains(r.notes, "Istio CA API at "+ic.Address) || !strings.Contains(r.notes, "spiffe://cluster.local/ns/<namespace>/sa/<service account>") {
					t.Errorf("NOTES.txt does not say where the agent's certificates come from:\n%s", r.notes)
				}
			},
		},
		{
			name:   "everything off but authz",
			values: authzOnly,
			check: func(t *testing.T, r *release) {
				for _, k := range r.names() {
					if strings.Contains(k, "issuer") || strings.Contains(k, "agent") || strings.HasPrefix(k, "ClusterRole") {
						t.Errorf("%s rendered with only authz on", k)
					}
				}
				trust := get[*corev1.ConfigMap](t, r, "ConfigMap", "am-athenz-mesh-trust")
				if !strings.Contains(trust.Data["roots.pem"], "BEGIN CERTIFICATE") || !strings.Contains(trust.Data["bundle.pub.pem"], "BEGIN PUBLIC KEY") {
					t.Errorf("trust ConfigMap = %v", trust.Data)
				}
				a := authzConfig(t, r)
				if a.Bundle.URL != "https://zts.example.com:4443/zts/v1/bundle" || a.Credentials.AccessToken.Enabled() || a.Listen.HTTP != "" {
					t.Errorf("authz = %+v", a)
				}
				if r.has("PodDisruptionBudget", authzName) {
					t.Error("PDB for one replica")
				}
				if _, ok := meshProviders(t, r)["athenz-mesh-http"]; ok {
					t.Error("NOTES.txt prints the HTTP provider with the HTTP mode off")
				}
			},
		},
		{
			name:   "ServiceMonitor on",
			values: "serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}\nagent: {enabled: true}\nidentityMapping: {rule: {domain_prefix: k8s., separator: \"--\"}}\n",
			check: func(t *testing.T, r *release) {
				sms := ofKind[*monitoringv1.ServiceMonitor](r, "ServiceMonitor")
				if len(sms) != 3 {
					t.Fatalf("%d ServiceMonitors, want issuer, authz and agent", len(sms))
				}
				for _, sm := range sms {
					if sm.Labels["release"] != "prom" || string(sm.Spec.Endpoints[0].Interval) != "15s" {
						t.Errorf("%s: labels %v endpoints %+v", sm.Name, sm.Labels, sm.Spec.Endpoints)
					}
					svc := get[*corev1.Service](t, r, "Service", sm.Name)
					sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
					if !sel.Matches(labels.Set(svc.Labels)) {
						t.Errorf("%s selects %v, Service labels %v", sm.Name, sm.Spec.Selector.MatchLabels, svc.Labels)
					}
					if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == sm.Spec.Endpoints[0].Port }) {
						t.Errorf("%s scrapes port %q, which Service %s lacks", sm.Name, sm.Spec.Endpoints[0].Port, svc.Name)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, parseValues(t, tc.values))
			checkWorkloads(t, r)
			checkConfigs(t, r)
			tc.check(t, r)
		})
	}
}

// TestRejectedValues: values the schema (or the templates) must refuse.
func TestRejectedValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values, want string }{
		{"typo at the top", "issuers: {enabled: true}\n", "issuers"},
		{"typo in a component", "issuer: {replica: 2}\n", "replica"},
		{"typo in the issuer config", "issuer: {config: {certificates: {max_validty: 24h}}}\n", "max_validty"},
		{"typo in the authz config", "authz: {config: {decision: {failure_mod: fail_open}}}\n", "failure_mod"},
		{"chart-owned authz field", "authz: {config: {bundle: {url: http://x}}}\n", "url"},
		{"several replicas on SQLite", "issuer: {replicas: 2}\n", "postgres"},
		{"several replicas with a generated CA", "issuer: {replicas: 2, store: {type: postgres, postgres: {existingSecret: pg}}, ca: {existingSecret: \"\"}}\n", "existingSecret"},
		{"unknown store", "issuer: {store: {type: mysql}}\n", "type"},
		{"bad duration", "issuer: {config: {certificates: {max_validity: 30 days}}}\n", "max_validity"},
		{"CUSTOM rule on principals", "istio: {authorizationPolicies: [{name: a, namespace: b, rules: [{from: [{source: {principals: [x]}}]}]}]}\n", "principals"},
		{"policy without namespace", "istio: {authorizationPolicies: [{name: a}]}\n", "namespace"},
		{"agent without a mapping", "agent: {enabled: true}\n", "identityMapping"},
		{"Istio CA without a mapping", "issuer: {istioCA: {enabled: true}}\n", "identityMapping"},
		{"agent on the Istio CA API without it", "identityMapping: {rule: {}}\nagent: {enabled: true, istioCA: {enabled: true}}\n", "istioCA"},
		{"agent cluster ID the issuer does not know", "identityMapping: {rule: {}}\nissuer: {istioCA: {enabled: true}}\nagent: {enabled: true, istioCA: {enabled: true, clusterID: other}}\n", "issuer.istioCA.clusterIDs"},
		{"agent audience the issuer does not accept", "identityMapping: {rule: {}}\nissuer: {istioCA: {enabled: true}}\nagent: {enabled: true, istioCA: {enabled: true, audience: athenz-mesh}}\n", "issuer.istioCA.audiences"},
		{"agent Istio CA address without port", "agent: {istioCA: {address: issuer}}\n", "address"},
		{"inline trust without roots", "trust: {existingConfigMap: \"\"}\n", "rootsPEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderRaw(t, parseValues(t, tc.values))
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestLint runs helm lint through the SDK with the defaults and each realistic value set.
func TestLint(t *testing.T) {
	t.Parallel()
	for name, vals := range map[string]string{"defaults": "", "ha": haIssuer, "mesh": meshValues, "authz only": authzOnly} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := action.NewLint()
			l.Namespace = namespace
			res := l.Run([]string{chartDir}, parseValues(t, vals))
			for _, m := range res.Messages {
				if m.Severity >= support.ErrorSev {
					t.Errorf("lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("lint: %v", err)
			}
		})
	}
}

// externalConfigMaps are created before the install (the walkthrough's step 3), not by
// the chart.
var externalConfigMaps = map[string]bool{"athenz-mesh-trust": true, "athenz-mesh-domains": true}

// checkWorkloads asserts what every Deployment and DaemonSet must have: security contexts,
// probes on declared ports, resources, mounts of declared volumes, and Services and PDBs
// that select the pods.
func checkWorkloads(t *testing.T, r *release) {
	t.Helper()
	type workload struct {
		name   string
		labels map[string]string
		spec   corev1.PodSpec
	}
	var ws []workload
	for _, d := range ofKind[*appsv1.Deployment](r, "Deployment") {
		ws = append(ws, workload{d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec})
		if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector does not match its pods", d.Name)
		}
	}
	for _, d := range ofKind[*appsv1.DaemonSet](r, "DaemonSet") {
		ws = append(ws, workload{d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec})
	}
	for _, w := range ws {
		spec := w.spec
		if w.labels["sidecar.istio.io/inject"] != "false" {
			t.Errorf("%s: pods are not excluded from Istio injection", w.name)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccomp profile is not RuntimeDefault", w.name)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			if cm := v.ConfigMap; cm != nil && !r.has("ConfigMap", cm.Name) && !externalConfigMaps[cm.Name] {
				t.Errorf("%s: volume %s uses ConfigMap %s, which is not rendered", w.name, v.Name, cm.Name)
			}
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := w.name + "/" + c.Name
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: root file system is writable", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: privilege escalation allowed", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: capabilities not dropped", where)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: container seccomp profile is not RuntimeDefault", where)
			}
			if w.name == agentName {
				// Node mode reads pods' projected tokens as root with one capability.
				if sc.Capabilities != nil && !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"}) {
					t.Errorf("%s: capabilities added %v, want only DAC_READ_SEARCH", where, sc.Capabilities.Add)
				}
			} else {
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
					t.Errorf("%s: may run as root", where)
				}
				if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: adds capabilities %v", where, sc.Capabilities.Add)
				}
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: resources %+v, want cpu and memory requests and a memory limit", where, c.Resources)
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: liveness or readiness probe missing", where)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if p == nil {
					continue
				}
				if p.HTTPGet == nil || !hasPort(c, p.HTTPGet.Port.String()) {
					t.Errorf("%s: probe %+v is not an httpGet on a declared port", where, p.ProbeHandler)
				}
			}
			for _, m := range c.VolumeMounts {
				if _, ok := volumes[m.Name]; !ok {
					t.Errorf("%s: mounts undeclared volume %s", where, m.Name)
				}
			}
		}
	}
	for _, svc := range ofKind[*corev1.Service](r, "Service") {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		var target *workload
		for i := range ws {
			if sel.Matches(labels.Set(ws[i].labels)) {
				target = &ws[i]
			}
		}
		if target == nil {
			t.Errorf("Service %s selects no pods", svc.Name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !slices.ContainsFunc(target.spec.Containers, func(c corev1.Container) bool { return hasPort(c, p.TargetPort.String()) }) {
				t.Errorf("Service %s port %s targets %s, which %s does not declare", svc.Name, p.Name, p.TargetPort.String(), target.name)
			}
		}
	}
	for _, pdb := range ofKind[*policyv1.PodDisruptionBudget](r, "PodDisruptionBudget") {
		sel := labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels)
		if !slices.ContainsFunc(ws, func(w workload) bool { return sel.Matches(labels.Set(w.labels)) }) {
			t.Errorf("PodDisruptionBudget %s selects no pods", pdb.Name)
		}
	}
}

func hasPort(c corev1.Container, port string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == port || fmt.Sprint(p.ContainerPort) == port
	})
}

func mounted(c corev1.Container, volume, at string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume && m.MountPath == at })
}

// checkConfigs loads every rendered component config with that component's own loader and
// validator, and checks that the files each config names are mounted in its container.
func checkConfigs(t *testing.T, r *release) {
	t.Helper()
	if r.has("ConfigMap", issuerName) {
		cfg := issuerConfig(t, r)
		c := container(t, r, "Deployment", issuerName)
		paths := []string{cfg.DataDir, cfg.Domains.Dir + "/x.yaml", cfg.CA.Dir + "/ca.cert.pem", cfg.Keys.ZTS.File, cfg.Keys.ZMS.File, cfg.Keys.Bundle.File, cfg.TLS.CertFile}
		checkMounted(t, c, paths...)
		if !slices.Equal(c.Args, []string{"issuer", "--config", "/etc/athenz-mesh/issuer/issuer.yaml"}) {
			t.Errorf("issuer args %v", c.Args)
		}
		checkListenPorts(t, c, cfg.Listen.Address, cfg.Listen.Metrics)
	}
	if r.has("ConfigMap", agentName) {
		cfg := agentConfig(t, r)
		c := container(t, r, "DaemonSet", agentName)
		checkMounted(t, c, cfg.Issuer.CAFile, cfg.SDS.Socket)
		if cfg.Node != nil {
			checkMounted(t, c, strings.ReplaceAll(cmpOr(cfg.Node.TokenPath, sds.DefaultKubeletTokenPath), sds.PodUIDPlaceholder, "uid"))
		}
		checkListenPorts(t, c, cfg.Metrics.Listen)
	}
	if r.has("ConfigMap", authzName) {
		cfg := authzConfig(t, r)
		c := container(t, r, "Deployment", authzName)
		paths := []string{cfg.Bundle.CAFile}
		for _, k := range cfg.Bundle.VerificationKeys {
			paths = append(paths, k.File)
		}
		checkMounted(t, c, paths...)
		checkListenPorts(t, c, cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Metrics)
	}
}

func issuerConfig(t *testing.T, r *release) issuer.Config {
	t.Helper()
	return loadIssuer(t, get[*corev1.ConfigMap](t, r, "ConfigMap", issuerName).Data["issuer.yaml"])
}

// issuerCluster is one cluster of the issuer's Istio CA API.
type issuerCluster = issuer.IstioClusterConfig

// loadIssuer loads a rendered issuer.yaml with the issuer's own loader and validator.
func loadIssuer(t *testing.T, doc string) issuer.Config {
	t.Helper()
	cfg, err := issuer.LoadConfig(writeTemp(t, "issuer.yaml", doc))
	if err != nil {
		t.Fatalf("rendered issuer.yaml: %v\n%s", err, doc)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered issuer.yaml: %v\n%s", err, doc)
	}
	return cfg
}

func authzConfig(t *testing.T, r *release) authz.Config {
	t.Helper()
	return loadAuthz(t, get[*corev1.ConfigMap](t, r, "ConfigMap", authzName).Data["authz.yaml"])
}

// loadAuthz loads a rendered authz.yaml with authz's own loader and validator.
func loadAuthz(t *testing.T, doc string) authz.Config {
	t.Helper()
	cfg, err := authz.LoadConfig(writeTemp(t, "authz.yaml", doc))
	if err != nil {
		t.Fatalf("rendered authz.yaml: %v\n%s", err, doc)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered authz.yaml: %v\n%s", err, doc)
	}
	return cfg
}

func agentConfig(t *testing.T, r *release) sds.AgentConfig {
	t.Helper()
	cm := get[*corev1.ConfigMap](t, r, "ConfigMap", agentName)
	cfg, err := sds.LoadAgentConfig(writeTemp(t, "agent.yaml", cm.Data["agent.yaml"]))
	if err != nil {
		t.Fatalf("rendered agent.yaml: %v\n%s", err, cm.Data["agent.yaml"])
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered agent.yaml: %v\n%s", err, cm.Data["agent.yaml"])
	}
	return cfg
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func container(t *testing.T, r *release, kind, name string) corev1.Container {
	t.Helper()
	switch kind {
	case "Deployment":
		return get[*appsv1.Deployment](t, r, kind, name).Spec.Template.Spec.Containers[0]
	default:
		return get[*appsv1.DaemonSet](t, r, kind, name).Spec.Template.Spec.Containers[0]
	}
}

// checkMounted checks that each non-empty path lies under a volume mount of c.
func checkMounted(t *testing.T, c corev1.Container, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if p == "" || strings.HasPrefix(p, "/") && path.Dir(p) == "/" {
			continue
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		}) {
			t.Errorf("%s: %s is not on a mounted volume", c.Name, p)
		}
	}
}

// checkListenPorts checks that every ":port" the config listens on is a container port.
func checkListenPorts(t *testing.T, c corev1.Container, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if a == "" || a == "off" {
			continue
		}
		i := strings.LastIndex(a, ":")
		if !hasPort(c, a[i+1:]) {
			t.Errorf("%s listens on %s, which is not a container port", c.Name, a)
		}
	}
}

// meshProviders decodes NOTES.txt's meshConfig snippet strictly into Istio's MeshConfig
// and checks each provider points at the authz Service; it returns the providers by name.
func meshProviders(t *testing.T, r *release) map[string]*meshv1alpha1.MeshConfig_ExtensionProvider {
	t.Helper()
	var mc meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{}).Unmarshal(meshConfigSnippet(t, r.notes), &mc); err != nil {
		t.Fatalf("NOTES.txt meshConfig is not Istio's MeshConfig: %v", err)
	}
	svc := get[*corev1.Service](t, r, "Service", authzName)
	fqdn := authzName + "." + namespace + ".svc.cluster.local"
	servicePort := func(p uint32) bool {
		return slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return uint32(sp.Port) == p })
	}
	out := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, p := range mc.GetExtensionProviders() {
		out[p.GetName()] = p
		switch {
		case p.GetEnvoyExtAuthzGrpc() != nil:
			g := p.GetEnvoyExtAuthzGrpc()
			if g.GetService() != fqdn || !servicePort(g.GetPort()) || g.GetFailOpen() {
				t.Errorf("gRPC provider %v: want %s on a Service port, failOpen false", g, fqdn)
			}
		case p.GetEnvoyExtAuthzHttp() != nil:
			h := p.GetEnvoyExtAuthzHttp()
			a := authzConfig(t, r)
			if h.GetService() != fqdn || !servicePort(h.GetPort()) || h.GetPathPrefix() != a.HTTP.PathPrefix {
				t.Errorf("HTTP provider %v: want %s, a Service port and path prefix %q", h, fqdn, a.HTTP.PathPrefix)
			}
			if !containsAll(h.GetHeadersToUpstreamOnAllow(), "x-athenz-principal", "x-athenz-decision") || !slices.Contains(h.GetIncludeRequestHeadersInCheck(), "authorization") {
				t.Errorf("HTTP provider headers %v", h)
			}
		default:
			t.Errorf("provider %s is neither envoyExtAuthzGrpc nor envoyExtAuthzHttp", p.GetName())
		}
	}
	if _, ok := out["athenz-mesh-grpc"]; !ok {
		t.Errorf("no gRPC provider in NOTES.txt: %v", out)
	}
	return out
}
