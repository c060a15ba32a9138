{{/* The authz config file: the chart-owned fields over authz.config. */}}
{{- define "athenz-mesh.authzConfig" -}}
{{- $v := .Values.authz -}}
{{- $issuer := default (include "athenz-mesh.issuerURL" .) $v.issuerURL -}}
{{- $trust := include "athenz-mesh.trustDir" . -}}
{{- $listen := dict "grpc" (printf ":%v" $v.grpcPort) "metrics" (printf ":%v" $v.metricsPort) -}}
{{- if $v.http.enabled -}}
{{- $_ := set $listen "http" (printf ":%v" $v.http.port) -}}
{{- end -}}
{{- $owned := dict
  "listen" $listen
  "bundle" (dict
    "url" (printf "%s/bundle" $issuer)
    "ca_file" (printf "%s/%s" $trust .Values.trust.rootsKey)
    "verification_keys" (list (dict "file" (printf "%s/%s" $trust .Values.trust.bundlePublicKeyKey))))
-}}
{{- if $v.http.enabled -}}
{{- $_ := set $owned "http" (dict "path_prefix" $v.http.pathPrefix) -}}
{{- end -}}
{{- if $v.accessTokens -}}
{{- $_ := set $owned "credentials" (dict "access_token" (dict
  "jwks_url" (printf "%s/oauth2/keys?rfc=true" $issuer)
  "issuer" (dig "tokens" "issuer" $issuer $.Values.issuer.config))) -}}
{{- end -}}
{{- $merged := mustMergeOverwrite (deepCopy $v.config) $owned -}}
{{- $mapping := include "athenz-mesh.identityMapping" . | fromYaml -}}
{{- if $mapping -}}
{{- $decision := default (dict) $merged.decision -}}
{{- $_ := set $decision "mapping" (mustMergeOverwrite (default (dict) $decision.mapping) (dict "istio" $mapping)) -}}
{{- $_ := set $merged "decision" $decision -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}
