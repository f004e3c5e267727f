{{/* Timing the sidecar, its monitor and its alerts share (docs/kubernetes-monitoring.md, "Timing").
     monitor.interval is the one scrape interval; timing.leaseSeconds the exporter lease's TTL. */}}

{{/* The lease the pods really get: a STREAMS_LEADER_LEASE_SECONDS left in streams.extraEnv wins, so the
     alert timing below never assumes a lease the sidecar does not use. */}}
{{- define "ecomind-streams.timing.leaseSeconds" -}}
{{- $env := .Values.streams.extraEnv | default dict -}}
{{- if hasKey $env "STREAMS_LEADER_LEASE_SECONDS" -}}
{{- $raw := toString (get $env "STREAMS_LEADER_LEASE_SECONDS") -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $raw) -}}
{{- fail (printf "streams.extraEnv.STREAMS_LEADER_LEASE_SECONDS=%q is not a number of seconds: set timing.leaseSeconds instead" $raw) -}}
{{- end -}}
{{- ceil (float64 $raw) | int -}}
{{- else -}}
{{- .Values.timing.leaseSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* A Prometheus duration (1h30m, 90s, 500ms) in whole seconds, rounded up. */}}
{{- define "ecomind-streams.timing.durationSeconds" -}}
{{- $ms := 0 -}}
{{- $scale := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- range $part := regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" (toString .) -1 -}}
{{- $unit := regexFind "[a-z]+$" $part -}}
{{- $ms = add $ms (mul (trimSuffix $unit $part | int64) (get $scale $unit)) -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/* The longest planned gap in the business series (docs/design.md, "The exporter hand-over"): a crash
     handed over takes the lease TTL + 1.1 intervals of grace + up to one interval; a rollout whose
     endpoints drop the pod at SIGTERM, 2.2 intervals. Plus the lease poll and a second of margin. */}}
{{- define "ecomind-streams.timing.longestGapSeconds" -}}
{{- $i := include "ecomind-streams.intervalSeconds" . | int -}}
{{- $lease := include "ecomind-streams.timing.leaseSeconds" . | int -}}
{{- add $lease (div (add (mul $i 22) 9) 10) 2 -}}
{{- end -}}

{{/* EcoMindStreamsNoExporter's `for:` in seconds: the gap above in whole minutes, at least one. */}}
{{- define "ecomind-streams.timing.noExporterForSeconds" -}}
{{- $need := include "ecomind-streams.timing.longestGapSeconds" . | int -}}
{{- mul 60 (div (add $need 59) 60) | max 60 -}}
{{- end -}}
