{{/* The agent's config file: the chart-owned fields over agent.config. */}}
{{- define "athenz-mesh.agentConfig" -}}
{{- $v := .Values.agent -}}
{{- $owned := dict
  "mode" "node"
  "issuer" (dict "url" (include "athenz-mesh.agentIssuerURL" .) "ca_file" (printf "%s/%s" (include "athenz-mesh.trustDir" .) .Values.trust.rootsKey))
  "sds" (dict "socket" (printf "/run/athenz-mesh/sockets/%s" $v.socketName))
  "metrics" (dict "listen" (printf ":%v" $v.metricsPort))
-}}
{{- $node := dict "provider" .Values.issuer.k8sProvider.name "mapping" (include "athenz-mesh.identityMapping" . | fromYaml) -}}
{{- $_ := set $owned "node" (mustMergeOverwrite (deepCopy (default (dict) $v.config.node)) $node) -}}
{{- $td := dig "certificates" "spiffe_trust_domain" "" .Values.issuer.config -}}
{{- if and $td (not (dig "certificates" "spiffe_trust_domain" "" $v.config)) -}}
{{- $_ := set $owned "certificates" (dict "spiffe_trust_domain" $td) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy $v.config) $owned) -}}
{{- end -}}

{{- define "athenz-mesh.agentIssuerURL" -}}
{{- default (include "athenz-mesh.issuerURL" .) .Values.agent.issuerURL -}}
{{- end -}}
