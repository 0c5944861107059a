{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "fame-consumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name used for every object of this chart. */}}
{{- define "fame-consumer.fullname" -}}
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

{{- define "fame-consumer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Stable subset used by selectors (a Deployment selector is immutable). */}}
{{- define "fame-consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fame-consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fame-consumer.labels" -}}
helm.sh/chart: {{ include "fame-consumer.chart" . }}
{{ include "fame-consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: consumer
app.kubernetes.io/part-of: fame-stream
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fame-consumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fame-consumer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fame-consumer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Autoscaled: the Deployment leaves .spec.replicas to KEDA or the HPA. */}}
{{- define "fame-consumer.autoscaled" -}}
{{- if or .Values.keda.enabled .Values.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{/* Kept in a template so that the Deployment and NOTES.txt agree. */}}
{{- define "fame-consumer.terminationGracePeriodSeconds" -}}
{{- add .Values.consumer.drainTimeoutSeconds .Values.consumer.shutdownMarginSeconds -}}
{{- end -}}

{{/*
Cross-field rules a JSON schema cannot express. A consumer beyond the partition count of the
events topic sits idle, so no replica setting may exceed kafka.partitions.
*/}}
{{- define "fame-consumer.validate" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled -}}
{{- fail "keda.enabled and autoscaling.enabled are mutually exclusive: KEDA creates its own HPA" -}}
{{- end -}}
{{- if gt (int .Values.keda.maxReplicaCount) $partitions -}}
{{- fail (printf "keda.maxReplicaCount (%d) must not exceed kafka.partitions (%d)" (int .Values.keda.maxReplicaCount) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount) -}}
{{- fail (printf "keda.minReplicaCount (%d) must not exceed keda.maxReplicaCount (%d)" (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) -}}
{{- end -}}
{{- if gt (int .Values.autoscaling.maxReplicas) $partitions -}}
{{- fail (printf "autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d)" (int .Values.autoscaling.maxReplicas) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if gt (int .Values.replicaCount) $partitions -}}
{{- fail (printf "replicaCount (%d) must not exceed kafka.partitions (%d)" (int .Values.replicaCount) $partitions) -}}
{{- end -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) (not .Values.kafka.tls.existingSecret) -}}
{{- fail "kafka.tls.existingSecret (the CA bundle Secret) is required for SSL and SASL_SSL" -}}
{{- end -}}
{{- end -}}

{{- define "fame-consumer.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
