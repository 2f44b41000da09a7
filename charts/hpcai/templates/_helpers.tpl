{{/* Names and labels shared by every object of the chart. */}}
{{- define "hpcai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hpcai.fullname" -}}
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

{{- define "hpcai.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hpcai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hpcai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hpcai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hpcai.serviceAccountName" -}}
{{- default (printf "%s-airflow" (include "hpcai.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "hpcai.jobNamespace" -}}
{{- default .Release.Namespace .Values.hpcai.kubernetes.namespace -}}
{{- end -}}

{{- define "hpcai.mlflowUrl" -}}
{{- printf "http://%s-mlflow.%s.svc:%v" (include "hpcai.fullname" .) .Release.Namespace .Values.mlflow.service.port -}}
{{- end -}}
