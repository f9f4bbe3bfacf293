{{/*
Helpers of the agent-growth chart. Every name starts with "agent-growth." so that they cannot
clash with a parent chart's helpers.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "agent-growth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: fullnameOverride, else "<release>-<chart>", else the release name
alone when it already contains the chart name. 63 characters is the DNS label limit; the longest
suffix the chart adds is "-operator-metrics" (17), so the prefix is cut at 46.
*/}}
{{- define "agent-growth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "agent-growth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Selectors use only these three labels: they are immutable on
Deployments, so nothing that changes between releases (version, chart) may appear in them.
Call with (dict "ctx" $ "component" "api").
*/}}
{{- define "agent-growth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-growth.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Labels of every resource. Call with (dict "ctx" $ "component" "api"); component may be "". */}}
{{- define "agent-growth.labels" -}}
{{ include "agent-growth.selectorLabels" . }}
helm.sh/chart: {{ include "agent-growth.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: agent-growth
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image reference: repository@digest when a digest is given, else repository:tag. */}}
{{- define "agent-growth.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* ServiceAccount name of one role. Call with (dict "ctx" $ "component" "worker"). */}}
{{- define "agent-growth.serviceAccountName" -}}
{{- $override := get .ctx.Values.serviceAccount.names .component }}
{{- default (printf "%s-%s" (include "agent-growth.fullname" .ctx) .component) $override }}
{{- end }}

{{/* Name of the Secret holding connection strings and keys. */}}
{{- define "agent-growth.secretName" -}}
{{- default (include "agent-growth.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Namespace where the API creates CoverageRefresh resources. */}}
{{- define "agent-growth.resourceNamespace" -}}
{{- default .Release.Namespace .Values.kubernetes.namespace }}
{{- end }}

{{/* Whether the operator runs: cluster mode on and the operator enabled. */}}
{{- define "agent-growth.operatorEnabled" -}}
{{- if and .Values.kubernetes.enabled .Values.operator.enabled }}true{{ end }}
{{- end }}

{{/* Namespaces the operator watches when not cluster-wide, as a JSON list. */}}
{{- define "agent-growth.watchNamespaces" -}}
{{- if .Values.operator.watch.namespaces }}
{{- toJson .Values.operator.watch.namespaces }}
{{- else }}
{{- toJson (list (include "agent-growth.resourceNamespace" .)) }}
{{- end }}
{{- end }}

{{/*
The API keys of the chart's own Secret: the value when set; else the key stored in the Secret
by an earlier install (so upgrades keep it); else a new random key. The result is cached in
.Values so that the Secret and the migration hook's copy of it agree within one render.
*/}}
{{- define "agent-growth.apiKeys" -}}
{{- if .Values.secrets.apiKeys }}
{{- .Values.secrets.apiKeys }}
{{- else }}
{{- if not (hasKey .Values.secrets "_generatedApiKeys") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "agent-growth.fullname" .) }}
{{- $stored := "" }}
{{- if $existing }}
{{- $stored = get $existing.data .Values.secrets.existingSecretKeys.apiKeys | b64dec }}
{{- end }}
{{- $_ := set .Values.secrets "_generatedApiKeys" (default (randAlphaNum 40) $stored) }}
{{- end }}
{{- .Values.secrets._generatedApiKeys }}
{{- end }}
{{- end }}

{{/* Data of the chart's own Secret (used by the Secret and the migration hook's Secret). */}}
{{- define "agent-growth.secretData" -}}
{{- $keys := .Values.secrets.existingSecretKeys }}
{{- $hint := "is required unless secrets.existingSecret names a Secret" }}
{{ $keys.databaseUrl }}: {{ required (print "secrets.databaseUrl " $hint) .Values.secrets.databaseUrl | b64enc | quote }}
{{ $keys.redisUrl }}: {{ required (print "secrets.redisUrl " $hint) .Values.secrets.redisUrl | b64enc | quote }}
{{ $keys.apiKeys }}: {{ include "agent-growth.apiKeys" . | b64enc | quote }}
{{- with .Values.secrets.webhookSecret }}
{{ $keys.webhookSecret }}: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Environment of every container: plain settings as values, secrets from the Secret, then
config.extraEnv (which may override either). Call with (dict "ctx" $ "secretName" "<name>").
*/}}
{{- define "agent-growth.env" -}}
{{- $ctx := .ctx }}
{{- $keys := $ctx.Values.secrets.existingSecretKeys }}
{{- $plain := include "agent-growth.configData" $ctx | fromYaml }}
{{- range $name := keys $plain | sortAlpha }}
- name: {{ $name }}
  value: {{ get $plain $name | quote }}
{{- end }}
- name: AGENT_GROWTH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $keys.databaseUrl }}
- name: AGENT_GROWTH_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $keys.redisUrl }}
- name: AGENT_GROWTH_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $keys.apiKeys }}
- name: AGENT_GROWTH_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $keys.webhookSecret }}
      optional: true
{{- with $ctx.Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Plain settings (AGENT_GROWTH_* variables that are not secret), as a YAML map. */}}
{{- define "agent-growth.configData" -}}
AGENT_GROWTH_ENVIRONMENT: {{ .Values.config.environment | quote }}
AGENT_GROWTH_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
AGENT_GROWTH_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
AGENT_GROWTH_REDIS_PREFIX: {{ .Values.config.redisPrefix | quote }}
AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE: {{ .Values.config.webhookAllowPrivate | quote }}
AGENT_GROWTH_KUBERNETES: {{ ternary "on" "off" .Values.kubernetes.enabled | quote }}
AGENT_GROWTH_KUBERNETES_NAMESPACE: {{ include "agent-growth.resourceNamespace" . | quote }}
AGENT_GROWTH_WORKER_DRAIN_TIMEOUT_S: {{ .Values.worker.drainTimeoutSeconds | quote }}
{{- end }}

{{/* The writable /tmp volume of every pod. */}}
{{- define "agent-growth.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.medium }}
    medium: {{ . }}
    {{- end }}
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{/*
An HTTP probe. Call with (dict "probe" .Values.api.livenessProbe "path" "/healthz" "port" "http").
Renders nothing when the probe is disabled.
*/}}
{{- define "agent-growth.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}

{{/*
Topology spread constraints with the component's selector filled in where omitted.
Call with (dict "ctx" $ "component" "api" "constraints" .Values.api.topologySpreadConstraints).
*/}}
{{- define "agent-growth.topologySpread" -}}
{{- $selector := include "agent-growth.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Label matchers that pick this release's series in PromQL. The ServiceMonitor and PodMonitor copy
the pods' instance and component labels onto every series (podTargetLabels).
*/}}
{{- define "agent-growth.promSelector" -}}
namespace="{{ .Release.Namespace }}",app_kubernetes_io_instance="{{ .Release.Name }}"
{{- end }}

{{/*
Checksum of the chart's own Secret, so that pods restart when a connection string or key changes.
An existing Secret is not seen by the chart: restart the pods after changing it (see the runbook).
*/}}
{{- define "agent-growth.secretChecksum" -}}
{{- if not .Values.secrets.existingSecret }}
{{- include "agent-growth.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Name of the kopf peering object (AGENT_GROWTH_OPERATOR_PEERING_NAME). Cluster-wide peerings are
cluster-scoped, so the namespace is part of the name there.
*/}}
{{- define "agent-growth.peeringName" -}}
{{- if .Values.operator.watch.clusterWide }}
{{- printf "%s-%s" .Release.Namespace (include "agent-growth.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "agent-growth.fullname" . }}
{{- end }}
{{- end }}

{{/* Rules the operator needs in every namespace it watches (see rbac.yaml). */}}
{{- define "agent-growth.operatorRules" -}}
- apiGroups: ["agentgrowth.io"]
  resources: ["coveragerefreshes"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["agentgrowth.io"]
  resources: ["coveragerefreshes/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Pod template metadata: labels and annotations (the Secret's checksum plus the role's own).
Call with (dict "ctx" $ "component" "api" "values" .Values.api).
*/}}
{{- define "agent-growth.podMetadata" -}}
{{- $annotations := dict }}
{{- with include "agent-growth.secretChecksum" .ctx }}
{{- $_ := set $annotations "checksum/secret" . }}
{{- end }}
{{- $annotations = merge $annotations (.values.podAnnotations | default dict) }}
labels:
  {{- include "agent-growth.labels" (dict "ctx" .ctx "component" .component) | nindent 2 }}
  {{- with .values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling fields of a pod spec. Call with (dict "ctx" $ "component" "api" "values" .Values.api).
*/}}
{{- define "agent-growth.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "agent-growth.topologySpread" (dict "ctx" $.ctx "component" $.component "constraints" .) | nindent 2 }}
{{- end }}
{{- end }}

{{/* Annotations of a migration hook resource. Call with (dict "ctx" $ "weight" -10). */}}
{{- define "agent-growth.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: {{ .ctx.Values.migrations.hookDeletePolicy }}
{{- end }}

{{/*
The HTTP probes a role's values define (startupProbe, livenessProbe, readinessProbe), each when
enabled. Readiness asks readinessPath, the others /healthz.
Call with (dict "values" .Values.api "port" "http" "readinessPath" "/readyz").
*/}}
{{- define "agent-growth.probes" -}}
{{- range $probe := list "startupProbe" "livenessProbe" "readinessProbe" }}
{{- $settings := get $.values $probe }}
{{- if and $settings $settings.enabled }}
{{- $path := ternary ($.readinessPath | default "/healthz") "/healthz" (eq $probe "readinessProbe") }}
{{ $probe }}:
  {{- include "agent-growth.httpProbe" (dict "probe" $settings "path" $path "port" $.port) | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
