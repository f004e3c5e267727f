"""What each EcoMind dashboard shows: one Panel per panel, read by generate.py (which builds the JSON) and
by the tests (which run every query on a real Prometheus, with the variables set to "All").

Variables: $datasource, then $cluster, $namespace and $job (every board: which release, when several
share one Prometheus; a label a setup lacks matches All), $org_id (Business), $instance (replica or service
instance), $group (Pipeline), $streams_job (Worker: the sidecar release whose lag figures it shows); all
but $datasource multi, with All. Every metric selector of every query is scoped to the release variables
by scope(). Tables, top-k, pies and stats are instant queries; "today"
panels read the sidecar's today-gauges; panels an alert watches link to its runbook section.

SIDECAR_BOARDS are fed by EcoMind Streams; SERVICE_BOARDS by the gateway, API and worker, which a
deployment may not scrape: they are separate so that they can be left out.
"""

import re
from dataclasses import dataclass

# The documented default; the Helm chart's runbookBaseUrl replaces it in rules and dashboards alike.
RUNBOOK_BASE = "https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md"
ORG = 'org_id=~"$org_id"'
INST = 'instance=~"$instance"'
# Process metrics carry no EcoMind name: keep the series of targets that are sidecar replicas.
SIDECAR = "and on (cluster, namespace, job, instance) ecomind_streams_build_info"
# A metric name (not a label name inside braces, not a function) and its braces, if any.
_SELECTOR = re.compile(r"(?<![\w:{,])\b(ecomind_\w+|process_\w+|up)\b(?![\w(=!~])(\{[^}]*\})?")


def scope(expr: str, job: str = "$job") -> str:
    """The query with the release variables added to every metric selector: a panel never mixes releases.
    Selectors already scoped are left alone (a service board scopes the sidecar's metrics by $streams_job)."""
    release = f'cluster=~"$cluster",namespace=~"$namespace",job=~"{job}"'

    def add(match: re.Match[str]) -> str:
        inner = (match.group(2) or "{}")[1:-1]
        if 'cluster=~"$cluster"' in inner:
            return match.group(0)
        return f"{match.group(1)}{{{release}{',' + inner if inner else ''}}}"

    return _SELECTOR.sub(add, expr)


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # stat, timeseries, bargauge, piechart, table
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str
    alerts: tuple[str, ...] = ()  # alerts that watch what the panel shows

    @property
    def instant(self) -> bool:
        return self.kind != "timeseries"


def _quantile(q: float, histogram: str, by: str = "") -> str:
    """The q-quantile of a histogram over the selected instances, by `by` (and le)."""
    return f"histogram_quantile({q}, sum by (le{by}) (rate({histogram}_bucket{{{INST}}}[5m])))"


def P(title: str, kind: str, unit: str, queries: list[tuple[str, str]], description: str, *alerts: str) -> Panel:
    return Panel(title, kind, unit, tuple((scope(q), legend) for q, legend in queries), description, alerts)


BUSINESS = [
    P(
        "Active orgs today",
        "stat",
        "short",
        [("sum(ecomind_daily_active_orgs)", "orgs")],
        "Distinct orgs with a raw event today (exact; restarts at midnight in STREAMS_TIMEZONE).",
        "EcoMindStreamsNoExporter",
    ),
    P(
        "Active users today",
        "stat",
        "short",
        [("sum(ecomind_daily_active_users)", "users")],
        "Distinct (org_id, user_id) pairs with a raw event today (exact).",
    ),
    P(
        "Energy today",
        "stat",
        "kwatth",
        [(f"sum(ecomind_total_kwh_today{{{ORG}}})", "kWh")],
        "kWh of today's enriched events for the selected orgs.",
    ),
    P(
        "CO2 today",
        "stat",
        "masskg",
        [(f"sum(ecomind_total_co2_kg_today{{{ORG}}})", "kg")],
        "kg CO2 of today's enriched events for the selected orgs.",
    ),
    P(
        "Top orgs by energy today",
        "bargauge",
        "kwatth",
        [(f"topk(10, sum by (org_id) (ecomind_total_kwh_today{{{ORG}}}))", "{{org_id}}")],
        "The ten orgs with the most kWh today (today-gauge, instant). __other__ sums the orgs beyond the series cap.",
        "LabelCapReached",
    ),
    P(
        "Top orgs by CO2 today",
        "bargauge",
        "masskg",
        [(f"topk(10, sum by (org_id) (ecomind_total_co2_kg_today{{{ORG}}}))", "{{org_id}}")],
        "The ten orgs with the most kg CO2 today (today-gauge, instant).",
    ),
    P(
        "Top orgs by events in the time range",
        "table",
        "short",
        [(f"topk(10, sum by (org_id) (increase(ecomind_events_ingested_total{{{ORG}}}[$__range])))", "{{org_id}}")],
        "Raw events per org over the dashboard's time range (one instant query, at most ten rows).",
        "EcoMindNoEventsIngested",
    ),
    P(
        "API calls by model",
        "timeseries",
        "reqps",
        [(f"sum by (model) (rate(ecomind_api_calls_total{{{ORG}}}[5m]))", "{{model}}")],
        "LLM API calls per second seen in valid raw events, by model.",
    ),
    P(
        "Provider mix in the time range",
        "piechart",
        "short",
        [(f"sum by (provider) (increase(ecomind_events_ingested_total{{{ORG}}}[$__range]))", "{{provider}}")],
        "Raw events by provider over the dashboard's time range (instant).",
    ),
    P(
        "Weekly and monthly active users",
        "timeseries",
        "short",
        [("sum(ecomind_weekly_active_users)", "WAU"), ("sum(ecomind_monthly_active_users)", "MAU")],
        "Distinct (org_id, user_id) with a raw event in the 7 and 30 local days ending today (exact).",
    ),
    P(
        "Stickiness (DAU / MAU)",
        "stat",
        "percentunit",
        [("sum(ecomind_daily_active_users) / clamp_min(sum(ecomind_monthly_active_users), 1)", "DAU/MAU")],
        "Share of the month's active users who were active today.",
    ),
    P(
        "Tokens today by org",
        "bargauge",
        "short",
        [(f"topk(10, sum by (org_id) (ecomind_tokens_today{{{ORG}}}))", "{{org_id}}")],
        "Tokens (in and out) of today's valid raw events, the ten largest orgs (instant).",
    ),
    P(
        "Energy today by model",
        "bargauge",
        "kwatth",
        [("sort_desc(sum by (provider, model) (ecomind_model_kwh_today))", "{{provider}} {{model}}")],
        "kWh of today's enriched events by model; the sum equals the org totals (instant).",
    ),
]

_DELAY = "sum by (le) (rate(ecomind_streams_enrichment_delay_seconds_bucket[5m]))"
PIPELINE = [
    P(
        "Replicas up, ready, exporting",
        "stat",
        "short",
        [
            ("count(ecomind_streams_build_info)", "up"),
            ("sum(ecomind_streams_ready)", "ready"),
            ("sum(ecomind_streams_exporter_leader)", "exporting"),
        ],
        "Replicas answering scrapes, replicas ready (/ready), and the one holding the exporter lease (must be 1).",
        "ServiceDown",
        "EcoMindStreamsNotReady",
        "EcoMindStreamsNoExporter",
    ),
    P(
        "Broker and Redis up, per replica",
        "timeseries",
        "short",
        [
            (f"min by (instance) (ecomind_streams_broker_up{{{INST}}})", "broker {{instance}}"),
            (f"min by (instance) (ecomind_streams_redis_up{{{INST}}})", "redis {{instance}}"),
            (f"max by (instance) (ecomind_streams_brokers_unreachable{{{INST}}})", "brokers unreachable {{instance}}"),
        ],
        "1 when Kafka metadata answers and every listed broker accepts a connection, and when the last Redis "
        "request succeeded; brokers that refused a connection at the last check.",
        "EcoMindStreamsNotReady",
        "TablesStuckRecovering",
    ),
    P(
        "Worker lag (messages)",
        "timeseries",
        "short",
        [("sum by (topic, partition) (ecomind_worker_kafka_lag)", "{{topic}}/{{partition}}")],
        "Messages between the enrichment worker's committed offset and the partition end.",
        "HighKafkaLag",
    ),
    P(
        "Worker lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [("max by (topic, partition) (ecomind_worker_kafka_lag_seconds)", "{{topic}}/{{partition}}")],
        "How old the oldest record the worker has not consumed is; the SLO is 10 s, the SLA 60 s.",
        "WorkerLagAboveSLO",
        "WorkerLagAboveSLA",
    ),
    P(
        "Consumer-group lag (messages)",
        "timeseries",
        "short",
        [('sum by (group, topic) (ecomind_consumergroup_lag{group=~"$group"})', "{{group}} {{topic}}")],
        "Messages each selected group has not consumed, up to the last stable offset, by topic.",
        "ConsumerGroupLagGrowing",
    ),
    P(
        "Consumer-group lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [
            ('max by (group, topic) (ecomind_consumergroup_lag_seconds{group=~"$group"})', "{{group}} {{topic}}"),
            ('max by (group) (ecomind_consumergroup_lag_slo_seconds{group=~"$group"})', "{{group}} SLO"),
        ],
        "Age of the oldest record each group has not consumed, against the group's SLO.",
        "ConsumerGroupLagAboveSLO",
    ),
    P(
        "Consumer groups: members and unknown ages",
        "timeseries",
        "short",
        [
            ('max by (group) (ecomind_consumergroup_members{group=~"$group"})', "{{group}} members"),
            ('max by (group) (ecomind_consumergroup_lag_seconds_unknown{group=~"$group"})', "{{group}} age unknown"),
        ],
        "Members per group, and 1 where records wait but their age could not be read in time.",
        "ConsumerGroupMembersNoCommits",
        "LagProbeStale",
    ),
    P(
        "Enrichment delay",
        "timeseries",
        "s",
        [(f"histogram_quantile({q}, {_DELAY})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
        "Enriched record's broker time minus the raw event's ts: the SLI of the 99 % within 10 s SLO.",
        "EnrichmentDelaySLOFastBurn",
        "EnrichmentDelaySLOSlowBurn",
    ),
    P(
        "Events/s per topic",
        "timeseries",
        "ops",
        [("sum by (topic) (rate(ecomind_streams_events_processed_total[5m]))", "{{topic}}")],
        "Valid events folded into the tables per second.",
        "EcoMindNoEventsIngested",
    ),
    P(
        "Invalid events by reason",
        "timeseries",
        "ops",
        [("sum by (topic, reason) (rate(ecomind_streams_events_invalid_total[5m]))", "{{topic}} {{reason}}")],
        "Records rejected per second, by topic and reason.",
        "InvalidEventsSpike",
    ),
    P(
        "Dead letters",
        "timeseries",
        "ops",
        [
            (f"sum by (instance) (rate(ecomind_streams_dead_letters_total{{{INST}}}[5m]))", "written {{instance}}"),
            (
                f"sum by (instance) (rate(ecomind_streams_dead_letter_errors_total{{{INST}}}[5m]))",
                "failed {{instance}}",
            ),
        ],
        "Invalid records forwarded to the dead-letter topic per second, and failed (retried) writes, which "
        "stall the replica's partitions.",
        "DeadLetterWritesFailing",
    ),
    P(
        "Label values folded into __other__",
        "bargauge",
        "short",
        [("max by (label) (ecomind_streams_label_values_folded_total) or on () vector(0)", "{{label}}")],
        "Distinct org, provider or model values beyond the series cap (0 while nothing is folded); sums stay exact.",
        "LabelCapReached",
    ),
    P(
        "Process CPU",
        "timeseries",
        "percentunit",
        [(f"rate(process_cpu_seconds_total{{{INST}}}[5m]) {SIDECAR}", "{{instance}}")],
        "CPU of each replica's process, in cores.",
    ),
    P(
        "Process memory",
        "timeseries",
        "bytes",
        [(f"process_resident_memory_bytes{{{INST}}} {SIDECAR}", "{{instance}}")],
        "Resident memory of each replica's process.",
    ),
]


def _up(component: str) -> Panel:
    return P("Instances up", "stat", "short", [(f'sum(up{{ecomind_component="{component}",{INST}}})', "up")],
             f"Scraped {component} instances answering (targets labelled ecomind_component={component}).",
             "ServiceDown")  # fmt: skip


GATEWAY = [
    _up("gateway"),
    P(
        "Requests by status",
        "timeseries",
        "reqps",
        [(f"sum by (status) (rate(ecomind_gateway_requests_total{{{INST}}}[5m]))", "{{status}}")],
        "Ingest requests per second, by HTTP status.",
    ),
    P(
        "5xx errors",
        "timeseries",
        "reqps",
        [(f'sum(rate(ecomind_gateway_requests_total{{status=~"5..",{INST}}}[5m]))', "5xx")],
        "Requests answered with 5xx per second; the alert fires above 0.05/s.",
        "HighErrorRate",
    ),
    P(
        "Request latency p95",
        "timeseries",
        "s",
        [
            (
                _quantile(0.95, "ecomind_gateway_request_duration_seconds", ", endpoint"),
                "{{endpoint}}",
            )
        ],
        "95th percentile of request duration by endpoint; the SLO is 100 ms.",
    ),
    P(
        "Kafka writes and errors",
        "timeseries",
        "ops",
        [
            (f"sum(rate(ecomind_gateway_kafka_writes_total{{{INST}}}[5m]))", "writes"),
            (f"sum(rate(ecomind_gateway_kafka_errors_total{{{INST}}}[5m]))", "errors"),
        ],
        "Events written to events.raw per second, and failed writes (they answer 500).",
        "HighErrorRate",
    ),
    P(
        "Kafka write latency p95",
        "timeseries",
        "s",
        [
            (
                _quantile(0.95, "ecomind_gateway_kafka_write_duration_seconds"),
                "p95",
            )
        ],
        "95th percentile of one Kafka write.",
    ),
    P(
        "Kafka and Redis connections",
        "table",
        "short",
        [
            (f"max by (instance, broker) (ecomind_gateway_kafka_connection_status{{{INST}}})", "broker {{broker}}"),
            (f"max by (instance) (ecomind_gateway_redis_connection_status{{{INST}}})", "redis"),
        ],
        "1 when the gateway's connection to each Kafka broker and to Redis is up.",
    ),
]

API = [
    _up("api"),
    P(
        "Requests by endpoint and status",
        "timeseries",
        "reqps",
        [
            (
                f"sum by (method, endpoint, status) (rate(ecomind_api_requests_total{{{INST}}}[5m]))",
                "{{method}} {{endpoint}} {{status}}",
            )
        ],
        "API requests per second.",
    ),
    P(
        "5xx errors by endpoint",
        "timeseries",
        "reqps",
        [(f'sum by (endpoint) (rate(ecomind_api_requests_total{{status=~"5..",{INST}}}[5m]))', "{{endpoint}}")],
        "Requests answered with 5xx per second.",
    ),
    P(
        "Request latency p95",
        "timeseries",
        "s",
        [
            (
                _quantile(0.95, "ecomind_api_request_duration_seconds", ", endpoint"),
                "{{endpoint}}",
            )
        ],
        "95th percentile of request duration by endpoint; the SLO is 200 ms, the alert fires above 0.5 s.",
        "HighLatency",
    ),
    P(
        "Database queries",
        "timeseries",
        "ops",
        [(f"sum by (query_type) (rate(ecomind_api_db_queries_total{{{INST}}}[5m]))", "{{query_type}}")],
        "Database queries per second by type.",
    ),
    P(
        "Database query latency p95",
        "timeseries",
        "s",
        [
            (
                _quantile(0.95, "ecomind_api_db_query_duration_seconds", ", query_type"),
                "{{query_type}}",
            )
        ],
        "95th percentile of query duration; the SLO is 50 ms.",
    ),
    P(
        "Database pool",
        "timeseries",
        "short",
        [
            (f"sum by (instance) (ecomind_api_db_connection_pool_size{{{INST}}})", "size {{instance}}"),
            (f"sum by (instance) (ecomind_api_db_connection_pool_available{{{INST}}})", "available {{instance}}"),
        ],
        "Connections in the pool and free ones; none free for 1 minute pages.",
        "DatabasePoolExhausted",
    ),
]

WORKER = [
    _up("worker"),
    P(
        "Events processed and failed",
        "timeseries",
        "ops",
        [
            (f"sum(rate(ecomind_worker_events_processed_total{{{INST}}}[5m]))", "processed"),
            (f"sum(rate(ecomind_worker_events_failed_total{{{INST}}}[5m]))", "failed"),
        ],
        "Events enriched per second, and events that failed.",
    ),
    P(
        "Failure ratio",
        "stat",
        "percentunit",
        [
            (
                f"sum(rate(ecomind_worker_events_failed_total{{{INST}}}[5m])) / "
                f"(sum(rate(ecomind_worker_events_processed_total{{{INST}}}[5m])) + "
                f"sum(rate(ecomind_worker_events_failed_total{{{INST}}}[5m])))",
                "failed",
            )
        ],
        "Share of events that failed over the last 5 minutes.",
    ),
    P(
        "Processing duration",
        "timeseries",
        "s",
        [
            (
                _quantile(q, "ecomind_worker_event_processing_duration_seconds"),
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.95)
        ],
        "Time to enrich and store one event.",
    ),
    P(
        "Kafka lag (messages)",
        "timeseries",
        "short",
        [(scope("max by (topic, partition) (ecomind_worker_kafka_lag)", "$streams_job"), "{{topic}}/{{partition}}")],
        "Messages the worker's group has not consumed, per partition (measured by the EcoMind Streams release "
        "picked in Streams job).",
        "HighKafkaLag",
    ),
    P(
        "Lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [(scope("max by (topic) (ecomind_worker_kafka_lag_seconds)", "$streams_job"), "{{topic}}")],
        "Measured by EcoMind Streams (the release picked in Streams job) from the group's offsets: the SLO is "
        "10 s, the SLA 60 s.",
        "WorkerLagAboveSLO",
        "WorkerLagAboveSLA",
    ),
]

Board = tuple[str, list[Panel], tuple[str, ...], str]
# uid: (title, panels, variables beyond $datasource and the release's, the metric whose targets the
# release and $instance variables list)
SIDECAR_BOARDS: dict[str, Board] = {
    "ecomind-business": ("EcoMind Business", BUSINESS, ("org_id",), "ecomind_streams_build_info"),
    "ecomind-pipeline": ("EcoMind Pipeline", PIPELINE, ("instance", "group"), "ecomind_streams_build_info"),
}
SERVICE_BOARDS: dict[str, Board] = {
    "ecomind-gateway": ("EcoMind Gateway", GATEWAY, ("instance",), 'up{ecomind_component="gateway"}'),
    "ecomind-api": ("EcoMind API", API, ("instance",), 'up{ecomind_component="api"}'),
    "ecomind-worker": ("EcoMind Worker", WORKER, ("instance", "streams_job"), 'up{ecomind_component="worker"}'),
}
BOARDS: dict[str, Board] = {**SIDECAR_BOARDS, **SERVICE_BOARDS}


def runbook(alert: str) -> str:
    return f"{RUNBOOK_BASE}#{alert.lower()}"


VARIABLES = ("cluster", "namespace", "job", "org_id", "instance", "group", "streams_job")


def expand(expr: str, range_: str = "1h", **values: str) -> str:
    """A panel's query as Grafana sends it for the given time range, each variable at its regex in
    values (one release: job="prod-ecomind-streams") or at "All" (.*) when not given."""
    unknown = set(values) - set(VARIABLES)
    if unknown:
        raise ValueError(f"no such dashboard variable: {', '.join(sorted(unknown))}")
    for name in VARIABLES:
        expr = expr.replace(f'"${name}"', f'"{values.get(name, ".*")}"')
    return expr.replace("$__range", range_)


def panel_queries(*uids: str, **values: str) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables expanded) of every panel on the given boards."""
    return [(p.title, expand(q, **values)) for uid in uids for p in BOARDS[uid][1] for q, _ in p.queries]
