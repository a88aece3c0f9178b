{{- define "argon.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "argon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "argon.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "argon.labels" -}}
app.kubernetes.io/name: argon-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "argon.selector" -}}
app.kubernetes.io/name: argon-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "argon.tlsSecret" -}}
{{- default (printf "%s-webhook-tls" (include "argon.fullname" .)) .Values.webhook.tlsSecretName -}}
{{- end -}}

{{- define "argon.webhookService" -}}
{{- printf "%s-webhook" (include "argon.fullname" .) -}}
{{- end -}}

{{- define "argon.webhookConfiguration" -}}
{{- printf "%s-inject" (include "argon.fullname" .) -}}
{{- end -}}

{{/* "true" when the operator issues the webhook certificate itself. */}}
{{- define "argon.manageCerts" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) (not .Values.webhook.caBundle) -}}
true
{{- end -}}
{{- end -}}
