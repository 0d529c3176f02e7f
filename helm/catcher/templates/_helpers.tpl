{{/*
Expand the name of the chart.
*/}}
{{- define "catcher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
*/}}
{{- define "catcher.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "catcher.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "catcher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "catcher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "catcher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The environment every Catcher container gets: settings, Kafka access, secrets.
*/}}
{{- define "catcher.env" -}}
- name: "KAFKA_BOOTSTRAP_SERVERS"
  valueFrom:
    secretKeyRef:
      name: {{ include "catcher.fullname" . }}-kafka
      key: "bootstrapServers"
- name: "KAFKA_SECURITY_PROTOCOL"
  valueFrom:
    secretKeyRef:
      name: {{ include "catcher.fullname" . }}-kafka
      key: "securityProtocol"
- name: "KAFKA_CLUSTER_CA_PATH"
  value: "/etc/kafkacluster/ca.crt"
- name: "KAFKA_CLIENT_CERT_PATH"
  value: "/etc/kafkauser/user.crt"
- name: "KAFKA_CLIENT_KEY_PATH"
  value: "/etc/kafkauser/user.key"
{{- if or .Values.config.noteburstUrl .Values.config.timesSquareUrl }}
{{- range $name := list "CATCHER_NOTEBURST_TOKEN" "CATCHER_TIMES_SQUARE_TOKEN" }}
- name: {{ $name | quote }}
  valueFrom:
    secretKeyRef:
      name: {{ include "catcher.fullname" $ }}-gafaelfawr-token
      key: "token"
{{- end }}
{{- end }}
{{- range $name, $key := dict "CATCHER_EFD_PASSWORD" "efd-password" "CATCHER_OCPS_PASSWORD" "ocps-password" "CATCHER_INFLUXDB_TOKEN" "influxdb-token" "CATCHER_LOVE_PASSWORD" "love-password" "CATCHER_ESCALATION_KEY" "escalation-key" }}
- name: {{ $name | quote }}
  valueFrom:
    secretKeyRef:
      name: {{ include "catcher.fullname" $ }}
      key: {{ $key | quote }}
      optional: true
{{- end }}
{{- range $name, $key := .Values.webhookSecrets }}
- name: {{ $name | quote }}
  valueFrom:
    secretKeyRef:
      name: {{ include "catcher.fullname" $ }}
      key: {{ $key | quote }}
{{- end }}
{{- end }}

{{/*
The Kafka certificates, mounted from the KafkaAccess secret.
*/}}
{{- define "catcher.kafkaMounts" -}}
- name: "kafka"
  mountPath: "/etc/kafkacluster/ca.crt"
  subPath: "ssl.truststore.crt"
- name: "kafka"
  mountPath: "/etc/kafkauser/user.crt"
  subPath: "ssl.keystore.crt"
- name: "kafka"
  mountPath: "/etc/kafkauser/user.key"
  subPath: "ssl.keystore.key"
- name: "rules"
  mountPath: "/etc/catcher/rules"
  readOnly: true
- name: "tmp"
  mountPath: "/tmp"
{{- end }}

{{- define "catcher.volumes" -}}
- name: "kafka"
  secret:
    secretName: {{ include "catcher.fullname" . }}-kafka
- name: "rules"
  configMap:
    name: {{ include "catcher.fullname" . }}-rules
- name: "data"
  emptyDir:
    medium: "Memory"
    sizeLimit: {{ .Values.scratchSize | quote }}
- name: "tmp"
  emptyDir:
    medium: "Memory"
    sizeLimit: {{ .Values.scratchSize | quote }}
{{- end }}

{{- define "catcher.securityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - "all"
readOnlyRootFilesystem: true
{{- end }}
