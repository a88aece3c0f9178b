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

{{/* The Secret with the installation's CA (ca.crt, ca.key) that signs branch
endpoints' certificates: the webhook's when the operator manages it (one CA),
else its own. */}}
{{- define "argon.caSecret" -}}
{{- if .Values.endpointTls.caSecretName -}}
{{- .Values.endpointTls.caSecretName -}}
{{- else if include "argon.manageCerts" . -}}
{{- include "argon.tlsSecret" . -}}
{{- else -}}
{{- printf "%s-ca" (include "argon.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the operator issues the webhook certificate itself. */}}
{{- define "argon.manageCerts" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) (not .Values.webhook.caBundle) -}}
true
{{- end -}}
{{- end -}}
