{{- define "ecomind-streams.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ecomind-streams.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ecomind-streams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecomind-streams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ecomind-streams.labels" -}}
{{ include "ecomind-streams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics-exporter
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ecomind-streams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ecomind-streams.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* http or https: the web config's TLS serves the probes and /metrics alike. */}}
{{- define "ecomind-streams.scheme" -}}
{{- if and .Values.webConfig.enabled .Values.webConfig.tls -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* What ServiceMonitor and PodMonitor endpoints share: path, scheme, TLS, basic auth and the
     ecomind_component label that the rules and inhibitions select on instead of the job's name. */}}
{{- define "ecomind-streams.scrapeEndpoint" -}}
path: /metrics
interval: {{ .Values.monitor.interval }}
scrapeTimeout: {{ .Values.monitor.scrapeTimeout }}
scheme: {{ include "ecomind-streams.scheme" . }}
{{- if and .Values.webConfig.enabled .Values.webConfig.tls }}
tlsConfig:
  {{- with .Values.webConfig.scrape.caSecret.name }}
  ca:
    secret:
      name: {{ . }}
      key: {{ $.Values.webConfig.scrape.caSecret.key }}
  {{- end }}
  {{- with .Values.webConfig.scrape.serverName }}
  serverName: {{ . }}
  {{- end }}
  insecureSkipVerify: {{ .Values.webConfig.scrape.insecureSkipVerify }}
{{- end }}
{{- if and .Values.webConfig.enabled .Values.webConfig.scrape.basicAuthSecret }}
basicAuth:
  username:
    name: {{ .Values.webConfig.scrape.basicAuthSecret }}
    key: {{ .Values.webConfig.scrape.usernameKey }}
  password:
    name: {{ .Values.webConfig.scrape.basicAuthSecret }}
    key: {{ .Values.webConfig.scrape.passwordKey }}
{{- end }}
relabelings:
  - targetLabel: ecomind_component
    replacement: streams
    action: replace
{{- end -}}

{{/* The scrape interval in seconds (monitor.interval is one number and one unit: the schema says so).
     The hand-over's settings, the shutdown budget, the grace period and the no-exporter alert's `for:`
     all follow from it (docs/design.md, "The exporter hand-over"). */}}
{{- define "ecomind-streams.intervalSeconds" -}}
{{- $i := .Values.monitor.interval -}}
{{- $n := regexFind "^[0-9]+" $i | int -}}
{{- $unit := trimPrefix (toString $n) $i -}}
{{- if eq $unit "h" }}{{ mul $n 3600 }}{{ else if eq $unit "m" }}{{ mul $n 60 }}{{ else }}{{ $n }}{{ end -}}
{{- end -}}

{{/* Drain within it: 1.1 intervals (rounded down) + 4 s, never below the sidecar's default 20 s. */}}
{{- define "ecomind-streams.shutdownSeconds" -}}
{{- $i := include "ecomind-streams.intervalSeconds" . | int -}}
{{- max 20 (add (div (mul $i 11) 10) 4) -}}
{{- end -}}

{{/* Longer than any planned gap in the business series: a crash handed over (lease TTL 10 s + 2.1
     intervals + the poll) or a rollout whose endpoints drop the pod at SIGTERM (2.2 intervals). */}}
{{- define "ecomind-streams.noExporterForSeconds" -}}
{{- $i := include "ecomind-streams.intervalSeconds" . | int -}}
{{- $need := add 12 (div (mul $i 22) 10) -}}
{{- mul 60 (div (add $need 59) 60) | max 60 -}}
{{- end -}}
