{{/* Chart name. */}}
{{- define "keyrotor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "keyrotor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "keyrotor.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "keyrotor.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "keyrotor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "keyrotor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "keyrotor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyrotor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "keyrotor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyrotor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Leader election is on with more than one replica, or when asked for. */}}
{{- define "keyrotor.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/*
Whether to render a monitoring.coreos.com/v1 object, by its renderMode:
skipIfMissing renders it only when the API is served, failIfMissing fails
the render when it is not, alwaysRender renders it regardless.
Call with (dict "root" $ "value" "serviceMonitor" "kind" "ServiceMonitor").
*/}}
{{- define "keyrotor.renderMonitoring" -}}
{{- $v := index .root.Values .value }}
{{- if $v.enabled }}
{{- if eq $v.renderMode "alwaysRender" }}true
{{- else if .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true
{{- else if eq $v.renderMode "failIfMissing" }}
{{- fail (printf "%s.enabled is true but the cluster does not serve monitoring.coreos.com/v1 (the %s API of the Prometheus Operator): install its CRDs, or set %s.renderMode=skipIfMissing to skip it or alwaysRender to render it anyway" .value .kind .value) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator image: [registry/]repository, then @digest or :tag (tag defaults to appVersion). */}}
{{- define "keyrotor.image" -}}
{{- $image := .Values.image }}
{{- $repository := $image.repository }}
{{- with $image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* imagePullSecrets, global ones first, without repeats; empty when none. */}}
{{- define "keyrotor.imagePullSecrets" -}}
{{- $secrets := list }}
{{- range (concat ((.Values.global).imagePullSecrets | default list) (.Values.imagePullSecrets | default list)) }}
{{- $entry := ternary (dict "name" .) . (kindIs "string" .) }}
{{- if not (has $entry $secrets) }}{{ $secrets = append $secrets $entry }}{{ end }}
{{- end }}
{{- with $secrets }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
A security context with the fixed IDs OpenShift assigns itself left out, as
global.compatibility.openshift.adaptSecurityContext says (auto: when the
cluster serves security.openshift.io/v1). Keys set to null are gone already
(Helm removes them). Call with (dict "root" $ "context" .Values.securityContext).
*/}}
{{- define "keyrotor.securityContext" -}}
{{- $context := deepCopy (.context | default dict) }}
{{- $mode := ((((.root.Values.global).compatibility).openshift).adaptSecurityContext) | default "auto" }}
{{- if or (eq $mode "force") (and (eq $mode "auto") (.root.Capabilities.APIVersions.Has "security.openshift.io/v1")) }}
{{- range (list "runAsUser" "runAsGroup" "fsGroup" "seLinuxOptions") }}
{{- $_ := unset $context . }}
{{- end }}
{{- end }}
{{- toYaml $context }}
{{- end }}
