// Package envoyconfigs holds Envoy bootstrap configurations for athenz-mesh (the YAML
// files in this directory) and the test that keeps them loadable: each file is decoded
// into Envoy's Bootstrap proto and validated, typed_config payloads included.
package envoyconfigs
