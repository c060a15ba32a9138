package envoyconfigs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"
)

// No Envoy binary exists on the build machines, so this test cannot run `envoy --mode
// validate`. It does what it can without one: each YAML file must decode into
// envoy.config.bootstrap.v3.Bootstrap with protojson (unknown fields are errors), pass
// the generated ValidateAll (protoc-gen-validate rules), and so must every typed_config
// inside it, resolved against the explicit list of extension types below; every cluster
// a filter or route names must be defined; and the ext_authz filter must run before the
// router.

// extensionTypes are the typed_config types the configurations may use. A new one must
// be added here (explicitly, not by a blank import).
var extensionTypes = []proto.Message{
	&hcmv3.HttpConnectionManager{},
	&extauthzv3.ExtAuthz{},
	&extauthzv3.ExtAuthzPerRoute{},
	&routerv3.Router{},
	&tlsv3.DownstreamTlsContext{},
	&tlsv3.UpstreamTlsContext{},
	&httpv3.HttpProtocolOptions{},
	&streamv3.StdoutAccessLog{},
}

func resolver(t *testing.T) *protoregistry.Types {
	t.Helper()
	types := new(protoregistry.Types)
	for _, m := range extensionTypes {
		if err := types.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			t.Fatal(err)
		}
	}
	return types
}

func TestConfigs(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sidecar-ingress.yaml", "sidecar-ingress-http.yaml", "front-proxy.yaml"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s is missing", want)
		}
	}
	types := resolver(t)
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			bs := loadBootstrap(t, file, types)
			if err := bs.ValidateAll(); err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			w := &walker{t: t, types: types, refs: map[string]string{}}
			w.message(bs.ProtoReflect(), "bootstrap")
			defined := map[string]bool{}
			for _, c := range bs.GetStaticResources().GetClusters() {
				defined[c.GetName()] = true
			}
			for name, where := range w.refs {
				if !defined[name] {
					t.Errorf("%s names cluster %q, which is not defined", where, name)
				}
			}
			if len(w.hcms) == 0 {
				t.Fatal("no HTTP connection manager")
			}
			for _, hcm := range w.hcms {
				var names []string
				for _, f := range hcm.GetHttpFilters() {
					names = append(names, f.GetName())
				}
				authz, router := slices.Index(names, "envoy.filters.http.ext_authz"), slices.Index(names, "envoy.filters.http.router")
				if authz < 0 || router != len(names)-1 || authz > router {
					t.Errorf("http filters %v: want ext_authz, and the router last", names)
				}
			}
			if !w.sawExtAuthz {
				t.Error("no ext_authz filter config")
			}
		})
	}
}

// loadBootstrap decodes a YAML bootstrap file strictly.
func loadBootstrap(t *testing.T, file string, types *protoregistry.Types) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := decodeBootstrap(raw, types)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func decodeBootstrap(raw []byte, types *protoregistry.Types) (*bootstrapv3.Bootstrap, error) {
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(js, bs); err != nil {
		return nil, err
	}
	return bs, nil
}

// TestCheckerCatchesRot makes sure the checks above fail on the mistakes they exist for.
func TestCheckerCatchesRot(t *testing.T) {
	types := resolver(t)
	for _, tc := range []struct{ name, yaml, want string }{
		{"misspelt field", "static_resources: {clusterz: []}", "unknown field"},
		{"unregistered typed_config", `static_resources: {listeners: [{name: l, address: {socket_address: {address: 0.0.0.0, port_value: 1}}, filter_chains: [{filters: [{name: f, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy}}]}]}]}`, "unable to resolve"},
	} {
		if _, err := decodeBootstrap([]byte(tc.yaml), types); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	bs, err := decodeBootstrap([]byte("static_resources: {clusters: [{name: c, connect_timeout: -1s}]}"), types)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.ValidateAll(); err == nil {
		t.Error("a negative connect_timeout passes ValidateAll")
	}
}

// walker visits every message, unpacking and validating Any payloads, and notes cluster
// references and connection managers.
type walker struct {
	t           *testing.T
	types       *protoregistry.Types
	refs        map[string]string // cluster name → where it is referenced
	hcms        []*hcmv3.HttpConnectionManager
	sawExtAuthz bool
}

func (w *walker) message(m protoreflect.Message, path string) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: w.types})
		if err != nil {
			w.t.Errorf("%s: %v", path, err)
			return
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				w.t.Errorf("%s (%s): %v", path, a.GetTypeUrl(), err)
			}
		}
		switch x := inner.(type) {
		case *hcmv3.HttpConnectionManager:
			w.hcms = append(w.hcms, x)
		case *extauthzv3.ExtAuthz:
			w.sawExtAuthz = true
		}
		w.message(inner.ProtoReflect(), path+"<"+strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/")+">")
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		where := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				w.message(v.List().Get(i).Message(), where)
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					w.message(mv.Message(), where+"["+k.String()+"]")
					return true
				})
			}
		case fd.Message() != nil:
			w.message(v.Message(), where)
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && (fd.Name() == "cluster_name" || fd.Name() == "cluster"):
			if !strings.HasPrefix(path, "bootstrap.static_resources.clusters") && path != "bootstrap.node" {
				w.refs[v.String()] = where
			}
		}
		return true
	})
}

// TestComposeExample checks examples/envoy-compose/compose.yaml as far as it can be
// without Docker: it parses, every service has an image, and every file it bind-mounts
// from the repository exists (the Envoy config among them, validated above).
func TestComposeExample(t *testing.T) {
	const dir = "../examples/envoy-compose"
	raw, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Services) == 0 {
		t.Fatal("no services")
	}
	mountsEnvoyConfig := false
	for name, svc := range doc.Services {
		if svc.Image == "" {
			t.Errorf("service %s has no image", name)
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
				t.Errorf("service %s mounts %s: %v", name, src, err)
			}
			mountsEnvoyConfig = mountsEnvoyConfig || strings.HasSuffix(src, "envoy-configs/quickstart.yaml")
		}
	}
	if !mountsEnvoyConfig {
		t.Error("no service mounts envoy-configs/quickstart.yaml")
	}
}
