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
events topic sits idle, so no replica setting in use may exceed kafka.partitions: the
autoscalers' bounds are checked only when that autoscaler is enabled.
*/}}
{{- define "fame-consumer.validate" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled -}}
{{- fail "keda.enabled and autoscaling.enabled are mutually exclusive: KEDA creates its own HPA" -}}
{{- end -}}
{{- if .Values.keda.enabled -}}
{{- if gt (int .Values.keda.maxReplicaCount) $partitions -}}
{{- fail (printf "keda.maxReplicaCount (%d) must not exceed kafka.partitions (%d)" (int .Values.keda.maxReplicaCount) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount) -}}
{{- fail (printf "keda.minReplicaCount (%d) must not exceed keda.maxReplicaCount (%d)" (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.maxReplicas) $partitions -}}
{{- fail (printf "autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d)" (int .Values.autoscaling.maxReplicas) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int .Values.replicaCount) $partitions -}}
{{- fail (printf "replicaCount (%d) must not exceed kafka.partitions (%d)" (int .Values.replicaCount) $partitions) -}}
{{- end -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) (not .Values.kafka.tls.existingSecret) -}}
{{- fail "kafka.tls.existingSecret (the CA bundle Secret) is required for SSL and SASL_SSL" -}}
{{- end -}}
{{- $topics := .Values.kafka.topics -}}
{{- if ne 3 (len (uniq (list $topics.events $topics.verdicts $topics.deadLetters))) -}}
{{- fail (printf "kafka.topics.events (%s), verdicts (%s) and deadLetters (%s) must be three different topics (the service refuses to start otherwise)" $topics.events $topics.verdicts $topics.deadLetters) -}}
{{- end -}}
{{- include "fame-consumer.validateExtraEnv" . -}}
{{- end -}}

{{/*
extraEnv may only add settings: an env entry beside the ConfigMap's envFrom silently wins, so a
name the chart sets (or sets under some values) would quietly override the typed value.
*/}}
{{- define "fame-consumer.validateExtraEnv" -}}
{{- $owned := include "fame-consumer.configData" . | fromYaml | keys -}}
{{- $owned = concat $owned (list "FAME_KAFKA_SASL_MECHANISM" "FAME_KAFKA_SSL_CAFILE" "FAME_KAFKA_SASL_USERNAME" "FAME_KAFKA_SASL_PASSWORD" "FAME_REDIS_PASSWORD" "FAME_WORKER_MEMORY_LIMIT_MB") -}}
{{- $seen := list -}}
{{- range .Values.extraEnv -}}
{{- if has .name $owned -}}
{{- fail (printf "extraEnv: %s is set by the chart; use its value in values.yaml instead" .name) -}}
{{- end -}}
{{- if has .name $seen -}}
{{- fail (printf "extraEnv: %s is listed twice" .name) -}}
{{- end -}}
{{- $seen = append $seen .name -}}
{{- end -}}
{{- end -}}

{{/*
FAME_DETECTOR_THREADS. 0 in the service means the CPUs the process may run on / workers, and a
pod sees every core of its node, not its share: on a 192-core node each of 2 workers would run
96 threads against a 4-CPU request. So with detectorThreads 0 the chart divides the pod's CPU
request ("4", 4, "3500m"; the limit where only a limit is set, as Kubernetes then requests the
limit) among the workers: at least 1 thread each, at most the service's 64. Without either it
stays 0.
*/}}
{{- define "fame-consumer.detectorThreads" -}}
{{- $threads := int .Values.consumer.detectorThreads -}}
{{- $resources := default dict .Values.resources -}}
{{- $cpu := dig "requests" "cpu" (dig "limits" "cpu" "" $resources) $resources | toString -}}
{{- if and (eq $threads 0) $cpu -}}
{{- if not (regexMatch `^[0-9]+(\.[0-9]+)?m?$` $cpu) -}}
{{- fail (printf `resources cpu %q: expected cores ("4", 0.5) or millicores ("3500m")` $cpu) -}}
{{- end -}}
{{- $millicores := 0.0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $millicores = float64 (trimSuffix "m" $cpu) -}}
{{- else -}}
{{- $millicores = mulf (float64 $cpu) 1000 -}}
{{- end -}}
{{- $perWorker := floor (divf $millicores (mulf 1000 (int .Values.consumer.workers))) -}}
{{- $threads = min 64 (max 1 (int $perWorker)) -}}
{{- end -}}
{{- $threads -}}
{{- end -}}

{{/*
Timing fields of one probe (the values' probes.<name>), every field the schema accepts; what is
left out gets Kubernetes' default.
*/}}
{{- define "fame-consumer.probeTiming" -}}
{{- range $field := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" }}
{{- if hasKey $ $field }}
{{ $field }}: {{ index $ $field }}
{{- end }}
{{- end }}
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
