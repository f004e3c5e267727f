{{/* Names follow the convention of kube-prometheus-stack and the prometheus-community exporters:
     nameOverride replaces the chart's name, fullnameOverride the whole object name. */}}
{{- define "ecomind-streams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ecomind-streams.fullname" -}}
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

{{- define "ecomind-streams.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ecomind-streams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecomind-streams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ecomind-streams.ownLabels" -}}
{{ include "ecomind-streams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics-exporter
helm.sh/chart: {{ include "ecomind-streams.chart" . }}
{{- end -}}

{{/* Every object's labels, commonLabels included: any template that includes this helper (the
     monitoring ones too) carries them. The schema keeps commonLabels off the chart's own keys. */}}
{{- define "ecomind-streams.labels" -}}
{{ include "ecomind-streams.ownLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels of an object whose values add their own (podLabels, monitor.labels, ...): one map, so a
     key in both commonLabels and the object's labels is written once, the object's value winning, and
     the chart's own keys winning over both. Called with (list $ extraLabels). */}}
{{- define "ecomind-streams.labelsWith" -}}
{{- $root := index . 0 -}}
{{- $own := include "ecomind-streams.ownLabels" $root | fromYaml -}}
{{- $labels := mergeOverwrite (dict) ($root.Values.commonLabels | default dict) (index . 1 | default dict) $own -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* The image reference. global.imageRegistry wins over image.registry (as in kube-prometheus-stack);
     either is prefixed when set. With neither, the chart's own repository is pulled from ghcr.io and
     any other as it is written (Docker Hub for `mycompany/ecomind-streams`, as the 0.1 chart read it).
     A repository that names its own registry (a first part with a dot or a colon, or localhost, as
     Docker reads it) is taken as it is. A digest pins the image whatever the tag says. */}}
{{- define "ecomind-streams.image" -}}
{{- $registry := (.Values.global).imageRegistry | default .Values.image.registry | default "" | trimSuffix "/" -}}
{{- $repository := .Values.image.repository -}}
{{- if and (not $registry) (eq $repository "ecomind/ecomind-streams") }}{{ $registry = "ghcr.io" }}{{ end -}}
{{- $named := regexMatch "^([^/]*[.:][^/]*|localhost)/" $repository -}}
{{- if and $registry (not $named) }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Pull secrets of the chart and of global (names or {name: ...} objects, as kube-prometheus-stack
     accepts them), without duplicates. */}}
{{- define "ecomind-streams.imagePullSecrets" -}}
{{- $names := list -}}
{{- range concat (.Values.imagePullSecrets | default list) ((.Values.global).imagePullSecrets | default list) -}}
{{- $name := "" -}}
{{- if kindIs "string" . }}{{ $name = . }}{{ else }}{{ $name = .name }}{{ end -}}
{{- if and $name (not (has $name $names)) }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- range $names }}
- name: {{ . }}
{{- end -}}
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
scrapeTimeout: {{ include "ecomind-streams.scrapeTimeout" . }}
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
{{- $s := $n -}}
{{- if eq $unit "h" }}{{ $s = mul $n 3600 }}{{ else if eq $unit "m" }}{{ $s = mul $n 60 }}{{ end -}}
{{- if gt $s 300 -}}
{{- fail (printf "monitor.interval=%s is above 5m: the shutdown budget that follows from it would outgrow the sidecar's limits" $i) -}}
{{- end -}}
{{- $s -}}
{{- end -}}

{{/* The scrape timeout: monitor.scrapeTimeout when given, else 10 s or the interval when shorter. A
     timeout above the interval is refused: the Operator and Prometheus would drop the scrape config. */}}
{{- define "ecomind-streams.scrapeTimeout" -}}
{{- $i := include "ecomind-streams.intervalSeconds" . | int -}}
{{- with .Values.monitor.scrapeTimeout -}}
{{- if gt (include "ecomind-streams.timing.durationSeconds" . | int) $i -}}
{{- fail (printf "monitor.scrapeTimeout=%s is longer than monitor.interval=%s: Prometheus refuses such a scrape config (leave scrapeTimeout empty for min(10s, interval))" . $.Values.monitor.interval) -}}
{{- end -}}
{{- . -}}
{{- else -}}
{{- printf "%ds" (min 10 $i) -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's shutdown budget, STREAMS_SHUTDOWN_TIMEOUT_SECONDS: streams.extraEnv's when given,
     else 1.1 intervals (rounded down) + 4 s, never below the sidecar's default 20 s. The drain waits up
     to 1.1 intervals + 1 s for the last scrape and must still release the lease within the budget. */}}
{{- define "ecomind-streams.shutdownSeconds" -}}
{{- $i := include "ecomind-streams.intervalSeconds" . | int -}}
{{- with .Values.streams.extraEnv.STREAMS_SHUTDOWN_TIMEOUT_SECONDS -}}
{{- $least := addf (mulf $i 1.1) 3 -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" .) -}}
{{- fail (printf "streams.extraEnv.STREAMS_SHUTDOWN_TIMEOUT_SECONDS=%q: expected a number of seconds" .) -}}
{{- end -}}
{{- if lt (float64 .) $least -}}
{{- fail (printf "streams.extraEnv.STREAMS_SHUTDOWN_TIMEOUT_SECONDS=%s is below 1.1 scrape intervals + 3 s (%.1f s for monitor.interval=%s): the exporter hand-over could not finish" . $least $.Values.monitor.interval) -}}
{{- end -}}
{{- . -}}
{{- else -}}
{{- max 20 (add (div (mul $i 11) 10) 4) -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's worst-case stop for a budget B (docs/operations.md, "Stopping"): every step of its stop
     shares one deadline, B from SIGTERM, and closing its sockets may run 0.5 s past it; Faust's own
     teardown takes 1-2 s more (it waits 1 s for tasks left behind, then 1 s before closing its loop).
     B + 5 s, rounded up: the margin is core/deadline.py's EXIT_MARGIN_S (tests/unit/deploy check both). */}}
{{- define "ecomind-streams.minGraceSeconds" -}}
{{- $budget := include "ecomind-streams.shutdownSeconds" . | float64 -}}
{{- add (ceil $budget | int) 5 -}}
{{- end -}}

{{- define "ecomind-streams.graceSeconds" -}}
{{- $least := include "ecomind-streams.minGraceSeconds" . | int -}}
{{- with .Values.terminationGracePeriodSeconds -}}
{{- if lt (int .) $least -}}
{{- fail (printf "terminationGracePeriodSeconds=%d is below the sidecar's worst-case shutdown: at least %d s with STREAMS_SHUTDOWN_TIMEOUT_SECONDS=%s (the budget + 5 s)" (int .) $least (include "ecomind-streams.shutdownSeconds" $)) -}}
{{- end -}}
{{- int . -}}
{{- else -}}
{{- $least -}}
{{- end -}}
{{- end -}}

{{/* Where the Secret volumes are mounted; the env names files under it. */}}
{{- define "ecomind-streams.secretsDir" -}}/etc/ecomind-streams/secrets{{- end -}}

{{/* The env the chart sets from its values, as a YAML list: the Deployment appends extraEnv to it and
     refuses a name given twice. */}}
{{- define "ecomind-streams.env" -}}
{{- $secrets := include "ecomind-streams.secretsDir" . -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.sasl.mechanism }}
- name: KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- if not (has . (list "OAUTHBEARER" "AWS_MSK_IAM")) }}
- name: KAFKA_SASL_USERNAME
  value: {{ $.Values.kafka.sasl.username | quote }}
{{- end }}
{{- end }}
{{- if eq .Values.kafka.sasl.mechanism "OAUTHBEARER" }}
{{- with .Values.kafka.sasl.oauth }}
- name: KAFKA_SASL_OAUTH_TOKEN_URL
  value: {{ .tokenUrl | quote }}
- name: KAFKA_SASL_OAUTH_CLIENT_ID
  value: {{ .clientId | quote }}
- name: KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE
  value: {{ printf "%s/kafka-oauth/%s" $secrets .clientSecretKey | quote }}
{{- with .scope }}
- name: KAFKA_SASL_OAUTH_SCOPE
  value: {{ . | quote }}
{{- end }}
{{- with .extensions }}
{{- $pairs := list }}
{{- range $key, $value := . }}{{ $pairs = append $pairs (printf "%s=%s" $key $value) }}{{ end }}
- name: KAFKA_SASL_OAUTH_EXTENSIONS
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.kafka.sasl.mechanism "AWS_MSK_IAM" }}
{{- with .Values.kafka.sasl.aws.region }}
- name: KAFKA_SASL_AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl.aws.roleArn }}
- name: KAFKA_SASL_AWS_ROLE_ARN
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl.aws.roleSessionName }}
- name: KAFKA_SASL_AWS_ROLE_SESSION_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .Values.kafka.sasl.existingSecret }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: {{ printf "%s/kafka-sasl/%s" $secrets .Values.kafka.sasl.passwordKey | quote }}
{{- end }}
{{- with .Values.kafka.tls.existingSecret }}
- name: KAFKA_SSL_CAFILE
  value: {{ printf "%s/kafka-tls/%s" $secrets $.Values.kafka.tls.caKey | quote }}
{{- if $.Values.kafka.tls.certKey }}
- name: KAFKA_SSL_CERTFILE
  value: {{ printf "%s/kafka-tls/%s" $secrets $.Values.kafka.tls.certKey | quote }}
- name: KAFKA_SSL_KEYFILE
  value: {{ printf "%s/kafka-tls/%s" $secrets $.Values.kafka.tls.keyKey | quote }}
{{- end }}
{{- end }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_PASSWORD_FILE
  value: {{ printf "%s/redis/%s" $secrets .Values.redis.passwordKey | quote }}
{{- end }}
{{- if .Values.redis.sentinel.existingSecret }}
- name: REDIS_SENTINEL_PASSWORD_FILE
  value: {{ printf "%s/redis-sentinel/%s" $secrets .Values.redis.sentinel.passwordKey | quote }}
{{- end }}
{{- with .Values.redis.tls }}
{{- if .caConfigMap }}
- name: REDIS_TLS_CA_FILE
  value: {{ printf "%s/redis-ca/%s" $secrets .caKey | quote }}
{{- else if .existingSecret }}
- name: REDIS_TLS_CA_FILE
  value: {{ printf "%s/redis-tls/%s" $secrets .caKey | quote }}
{{- end }}
{{- if .certKey }}
- name: REDIS_TLS_CERT_FILE
  value: {{ printf "%s/redis-tls/%s" $secrets .certKey | quote }}
- name: REDIS_TLS_KEY_FILE
  value: {{ printf "%s/redis-tls/%s" $secrets .keyKey | quote }}
{{- end }}
{{- end }}
- name: STREAMS_APP_ID
  value: {{ .Values.streams.appId | quote }}
- name: STREAMS_RAW_TOPIC
  value: {{ .Values.streams.rawTopic | quote }}
- name: STREAMS_ENRICHED_TOPIC
  value: {{ .Values.streams.enrichedTopic | quote }}
- name: STREAMS_WATCH_GROUP
  value: {{ .Values.streams.watchGroup | quote }}
- name: STREAMS_TIMEZONE
  value: {{ .Values.streams.timezone | quote }}
- name: STREAMS_REDIS_SHARDS
  value: {{ .Values.streams.redisShards | quote }}
- name: STREAMS_WEB_PORT
  value: {{ .Values.port | quote }}
- name: STREAMS_SCRAPE_INTERVAL_SECONDS
  value: {{ include "ecomind-streams.intervalSeconds" . | quote }}
- name: STREAMS_SHUTDOWN_TIMEOUT_SECONDS
  value: {{ include "ecomind-streams.shutdownSeconds" . | quote }}
- name: STREAMS_LAG_SLO_SECONDS
  value: {{ include "ecomind-streams.lagSlo" . | quote }}
{{- if not (hasKey (.Values.streams.extraEnv | default dict) "STREAMS_LEADER_LEASE_SECONDS") }}{{/* else extraEnv's, which the alert timing reads too */}}
- name: STREAMS_LEADER_LEASE_SECONDS
  value: {{ include "ecomind-streams.timing.leaseSeconds" . | quote }}
{{- end }}
{{- with .Values.streams.deadLetterTopic }}
- name: STREAMS_DEAD_LETTER_TOPIC
  value: {{ . | quote }}
{{- end }}
{{- if .Values.webConfig.enabled }}
- name: STREAMS_WEB_CONFIG_FILE
  value: {{ printf "/etc/ecomind-streams/web/%s" .Values.webConfig.configKey | quote }}
{{- end }}
{{- range $name, $value := .Values.streams.extraEnv }}
{{- if not (has $name (list "STREAMS_SHUTDOWN_TIMEOUT_SECONDS" "STREAMS_LAG_SLO_SECONDS")) }}{{/* given above: the budget the grace period follows, the SLO the alert shares */}}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* STREAMS_LAG_SLO_SECONDS: the watched group's SLO is the one WorkerLagAboveSLO fires at, so the status
     page and ecomind_consumergroup_lag_slo_seconds agree with it. Rules in streams.extraEnv come first;
     the sidecar takes the first rule that fully matches a group, so the watched group's pair is added
     after them unless one of them already covers it. */}}
{{- define "ecomind-streams.lagSlo" -}}
{{- $threshold := .Values.prometheusRule.thresholds.WorkerLagAboveSLO -}}
{{- if le (float64 $threshold) 0.0 -}}
{{- fail (printf "prometheusRule.thresholds.WorkerLagAboveSLO=%v: the watched group's lag SLO must be above 0 s (the sidecar refuses 0)" $threshold) -}}
{{- end -}}
{{- $group := .Values.streams.watchGroup -}}
{{- $own := printf "%s=%s" (regexQuoteMeta $group) (include "ecomind-streams.promNumber" $threshold) -}}
{{- $user := get (.Values.streams.extraEnv | default dict) "STREAMS_LAG_SLO_SECONDS" | default "" | toString | trim -}}
{{- $covered := false -}}
{{- range $item := splitList "," $user -}}
{{- $item = trim $item -}}
{{- if and $item (contains "=" $item) -}}
{{- $pattern := regexReplaceAll "=[^=]*$" $item "" -}}
{{- if regexMatch (printf "^(?:%s)$" $pattern) $group }}{{ $covered = true }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $user -}}{{ $own }}
{{- else if $covered -}}{{ $user }}
{{- else -}}{{ printf "%s,%s" (trimSuffix "," $user) $own }}
{{- end -}}
{{- end -}}

{{/* The `helm test` pod's labels: not the Deployment's selector (the Service and the PDB must not count
     it), but a selector of their own that the NetworkPolicy lets in. */}}
{{- define "ecomind-streams.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "ecomind-streams.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
