"""The Gateway, API and Worker boards: services a deployment may not scrape (see boards.py)."""

from board_kit import INST, P, Panel, quantile, scope


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
                quantile(0.95, "ecomind_gateway_request_duration_seconds", ", endpoint"),
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
                quantile(0.95, "ecomind_gateway_kafka_write_duration_seconds"),
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
                quantile(0.95, "ecomind_api_request_duration_seconds", ", endpoint"),
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
                quantile(0.95, "ecomind_api_db_query_duration_seconds", ", query_type"),
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
                quantile(q, "ecomind_worker_event_processing_duration_seconds"),
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
