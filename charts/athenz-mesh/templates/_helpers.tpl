{{/* Names, labels and shared pod settings of the athenz-mesh chart. */}}

{{- define "athenz-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "athenz-mesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (dict "root" $ "component" "issuer"). */}}
{{- define "athenz-mesh.componentName" -}}
{{- printf "%s-%s" (include "athenz-mesh.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "athenz-mesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "athenz-mesh.selectorLabels" . }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "athenz-mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "athenz-mesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod template metadata: labels and annotations, with a checksum of the config. */}}
{{- define "athenz-mesh.podMetadata" -}}
labels:
  {{- include "athenz-mesh.selectorLabels" . | nindent 2 }}
  {{- if .root.Values.podDefaults.disableIstioInjection }}
  sidecar.istio.io/inject: "false"
  {{- end }}
  {{- with .root.Values.podDefaults.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ .checksum }}
  {{- with .root.Values.podDefaults.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "athenz-mesh.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security context: non-root, fsGroup, seccomp RuntimeDefault. */}}
{{- define "athenz-mesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podDefaults.runAsUser }}
runAsGroup: {{ .Values.podDefaults.runAsGroup }}
fsGroup: {{ .Values.podDefaults.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: no privilege, read-only root, no capabilities. */}}
{{- define "athenz-mesh.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* In-cluster DNS name of the issuer Service. */}}
{{- define "athenz-mesh.issuerHost" -}}
{{- printf "%s.%s.svc" (include "athenz-mesh.componentName" (dict "root" . "component" "issuer")) .Release.Namespace -}}
{{- end -}}

{{/* Base URL of the issuer's ZTS API. */}}
{{- define "athenz-mesh.issuerURL" -}}
{{- printf "https://%s:%v/zts/v1" (include "athenz-mesh.issuerHost" .) .Values.issuer.port -}}
{{- end -}}

{{/* Fully qualified name of the authz Service, for Istio's mesh config. */}}
{{- define "athenz-mesh.authzFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "athenz-mesh.componentName" (dict "root" . "component" "authz")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "athenz-mesh.domainsConfigMap" -}}
{{- default (include "athenz-mesh.componentName" (dict "root" . "component" "domains")) .Values.domains.existingConfigMap -}}
{{- end -}}

{{- define "athenz-mesh.trustConfigMap" -}}
{{- default (include "athenz-mesh.componentName" (dict "root" . "component" "trust")) .Values.trust.existingConfigMap -}}
{{- end -}}

{{/* Mount paths shared by the templates and the rendered configs. */}}
{{- define "athenz-mesh.trustDir" -}}/etc/athenz-mesh/trust{{- end -}}
