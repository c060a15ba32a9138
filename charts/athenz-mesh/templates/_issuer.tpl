{{/* The issuer's config file: the chart-owned fields over issuer.config. */}}
{{- define "athenz-mesh.issuerConfig" -}}
{{- $v := .Values.issuer -}}
{{- $svc := include "athenz-mesh.componentName" (dict "root" . "component" "issuer") -}}
{{- $owned := dict
  "listen" (dict "address" (printf ":%v" $v.port) "metrics" (printf ":%v" $v.metricsPort))
  "data_dir" "/var/lib/athenz-mesh/issuer"
  "domains" (dict "dir" "/etc/athenz-mesh/domains")
-}}
{{- if not (dig "tokens" "issuer" "" $v.config) -}}
{{- $_ := set $owned "tokens" (dict "issuer" (include "athenz-mesh.issuerURL" .)) -}}
{{- end -}}
{{- $hosts := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain) "localhost" "127.0.0.1" -}}
{{- $tls := dict "hostnames" (concat $hosts $v.tls.extraHostnames) -}}
{{- if $v.tls.existingSecret -}}
{{- $tls = dict "cert_file" "/etc/athenz-mesh/tls/tls.crt" "key_file" "/etc/athenz-mesh/tls/tls.key" -}}
{{- end -}}
{{- $_ := set $owned "tls" $tls -}}
{{- if $v.ca.existingSecret -}}
{{- $_ := set $owned "ca" (dict "dir" "/etc/athenz-mesh/ca" "allow_group_readable_key" true) -}}
{{- else -}}
{{- $_ := set $owned "ca" (dict "create" true) -}}
{{- end -}}
{{- if $v.keys.existingSecret -}}
{{- $_ := set $owned "keys" (dict
  "zts" (dict "file" "/etc/athenz-mesh/keys/zts.key.pem")
  "zms" (dict "file" "/etc/athenz-mesh/keys/zms.key.pem")
  "bundle" (dict "file" "/etc/athenz-mesh/keys/bundle.key.pem")) -}}
{{- end -}}
{{- if eq $v.store.type "postgres" -}}
{{- $_ := set $owned "store" (dict "dsn" $v.store.postgres.dsn) -}}
{{- end -}}
{{- $providers := list -}}
{{- if $v.k8sProvider.enabled -}}
{{- $k8s := dict "audiences" $v.k8sProvider.audiences "instance_id" $v.k8sProvider.instanceID "token_review" (dict) "mapping" (include "athenz-mesh.identityMapping" . | fromYaml) -}}
{{- $p := dict "name" $v.k8sProvider.name "attestor" "k8s" "k8s" $k8s -}}
{{- with $v.k8sProvider.maxValidity }}{{ $_ := set $p "max_validity" . }}{{ end -}}
{{- $providers = append $providers $p -}}
{{- end -}}
{{- $providers = concat $providers (default (list) $v.config.providers) -}}
{{- if $v.istioCA.enabled -}}
{{- $clusters := list -}}
{{- range $v.istioCA.clusterIDs }}{{ $clusters = append $clusters (dict "id" . "token_review" (dict)) }}{{ end -}}
{{- $istio := dict "listen" (printf ":%v" $v.istioCA.port) "trust_domain" $v.istioCA.trustDomain "provider" $v.istioCA.provider "audiences" $v.istioCA.audiences "clusters" $clusters "mapping" (include "athenz-mesh.identityMapping" . | fromYaml) -}}
{{- with $v.istioCA.maxValidity }}{{ $_ := set $istio "max_validity" . }}{{ end -}}
{{- $_ := set $owned "istio" $istio -}}
{{- end -}}
{{- $merged := mustMergeOverwrite (deepCopy (omit $v.config "providers")) $owned -}}
{{- if $providers }}{{ $_ := set $merged "providers" $providers }}{{ end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* identityMapping in the YAML shape of athenz.IstioMapping (entries, rule). */}}
{{- define "athenz-mesh.identityMapping" -}}
{{- $m := dict -}}
{{- with .Values.identityMapping.entries }}{{ $_ := set $m "entries" . }}{{ end -}}
{{- with .Values.identityMapping.rule }}{{ $_ := set $m "rule" . }}{{ end -}}
{{- toYaml $m -}}
{{- end -}}
