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
{{- with (include "athenz-mesh.agentIstioCA" . | fromYaml) }}{{ $_ := set $node "istio_ca" . }}{{ end -}}
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

{{/* node.istio_ca of the agent, empty when agent.istioCA is off. */}}
{{- define "athenz-mesh.agentIstioCA" -}}
{{- $a := .Values.agent.istioCA -}}
{{- $i := .Values.issuer.istioCA -}}
{{- if $a.enabled -}}
{{- $audience := default (first $i.audiences) $a.audience -}}
{{- if not $a.address -}}
{{- if not (has $a.clusterID $i.clusterIDs) -}}
{{- fail (printf "agent.istioCA.clusterID %q is not among issuer.istioCA.clusterIDs %v: the issuer would refuse every pod" $a.clusterID $i.clusterIDs) -}}
{{- end -}}
{{- if not (has $audience $i.audiences) -}}
{{- fail (printf "agent.istioCA.audience %q is not among issuer.istioCA.audiences %v: the issuer would refuse every pod's token" $audience $i.audiences) -}}
{{- end -}}
{{- end -}}
{{- $addr := default (printf "%s:%v" (include "athenz-mesh.issuerHost" .) $i.port) $a.address -}}
{{- toYaml (dict "address" $addr "cluster_id" $a.clusterID "trust_domain" $i.trustDomain "audience" $audience) -}}
{{- end -}}
{{- end -}}
