"""The Gateway, API and Worker dashboards against a real Prometheus. Those services are not ours, so small
stand-in exporters serve the metric names the design document gives them (with its labels), and
Prometheus scrapes them through the jobs of ops/prometheus/ecomind-services.yml. Every panel query must
return data with the variables at All and at the stand-ins' jobs (none at another release's job), and a
few must return exactly what the stand-ins serve."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.local.proc import Server, free_port, wait_port
from streams.local.sidecar_proc import wait_until
from tests.integration.conftest import panel_queries

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # no broker involved: one run is enough
OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
POOL_SIZE = 10


class StandIn:
    """One service's /metrics on loopback, its values moving on a timer as a live service's would."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.port = free_port()
        self.steps: list[Any] = []

    def serve(self) -> StandIn:
        start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        return self

    def tick(self) -> None:
        for step in self.steps:
            step()


def gateway() -> StandIn:
    s = StandIn()
    requests = Counter("ecomind_gateway_requests", "Total HTTP requests", ["status"], registry=s.registry)
    duration = Histogram("ecomind_gateway_request_duration_seconds", "", ["endpoint"], registry=s.registry)
    writes = Counter("ecomind_gateway_kafka_writes", "", registry=s.registry)
    errors = Counter("ecomind_gateway_kafka_errors", "", registry=s.registry)
    write_s = Histogram("ecomind_gateway_kafka_write_duration_seconds", "", registry=s.registry)
    broker = Gauge("ecomind_gateway_kafka_connection_status", "", ["broker"], registry=s.registry)
    redis = Gauge("ecomind_gateway_redis_connection_status", "", registry=s.registry)
    for b in ("1", "2", "3"):
        broker.labels(b).set(1)
    redis.set(1)

    def step() -> None:
        requests.labels("202").inc(20)
        requests.labels("400").inc(1)
        requests.labels("500").inc(2)
        errors.inc(2)
        writes.inc(20)
        for _ in range(5):
            duration.labels("/v1/ingest").observe(0.03)
            write_s.observe(0.01)

    s.steps.append(step)
    return s


def api() -> StandIn:
    s = StandIn()
    requests = Counter("ecomind_api_requests", "", ["method", "endpoint", "status"], registry=s.registry)
    duration = Histogram("ecomind_api_request_duration_seconds", "", ["endpoint"], registry=s.registry)
    queries = Counter("ecomind_api_db_queries", "", ["query_type"], registry=s.registry)
    query_s = Histogram("ecomind_api_db_query_duration_seconds", "", ["query_type"], registry=s.registry)
    Gauge("ecomind_api_db_connection_pool_size", "", registry=s.registry).set(POOL_SIZE)
    Gauge("ecomind_api_db_connection_pool_available", "", registry=s.registry).set(POOL_SIZE - 3)

    def step() -> None:
        requests.labels("GET", "/v1/today", "200").inc(10)
        requests.labels("POST", "/v1/auth/login", "500").inc(1)
        queries.labels("select").inc(12)
        for _ in range(5):
            duration.labels("/v1/today").observe(0.12)
            query_s.labels("select").observe(0.02)

    s.steps.append(step)
    return s


def worker() -> StandIn:
    s = StandIn()
    processed = Counter("ecomind_worker_events_processed", "", registry=s.registry)
    failed = Counter("ecomind_worker_events_failed", "", registry=s.registry)
    duration = Histogram("ecomind_worker_event_processing_duration_seconds", "", registry=s.registry)

    def step() -> None:
        processed.inc(30)
        failed.inc(1)
        for _ in range(5):
            duration.observe(0.004)

    s.steps.append(step)
    return s


def streams() -> StandIn:
    """The lag on the Worker board is measured by the sidecar, so its series come from here."""
    s = StandIn()
    Gauge("ecomind_worker_kafka_lag_seconds", "", ["topic", "partition"], registry=s.registry).labels(
        "events.raw", "0"
    ).set(2.5)
    Gauge("ecomind_worker_kafka_lag", "", ["topic", "partition"], registry=s.registry).labels("events.raw", "0").set(12)
    return s


# The jobs the stand-ins are scraped as (ecomind-services.yml, prometheus.yml): one release's values.
RELEASE = {
    "ecomind-gateway": {"job": "ecomind-gateway"},
    "ecomind-api": {"job": "ecomind-api"},
    "ecomind-worker": {"job": "ecomind-worker", "streams_job": "ecomind-streams"},
}


def _release_queries(uid: str, **values: str) -> list[tuple[str, str]]:
    """The board's panel queries as Grafana sends them with the given variables (the others at All)."""
    spec = importlib.util.spec_from_file_location("boards", OPS.parent / "grafana" / "boards.py")
    assert spec and spec.loader
    boards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(boards)
    queries: list[tuple[str, str]] = boards.panel_queries(uid, **values)
    return queries


def _panel(uid: str, title: str) -> list[str]:
    return [expr for t, expr in _release_queries(uid, **RELEASE[uid]) if t == title]


@pytest.fixture
def stand_ins() -> Iterator[dict[str, StandIn]]:
    services = {"gateway": gateway(), "api": api(), "worker": worker(), "streams": streams()}
    for s in services.values():
        s.serve()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.2):
            for s in services.values():
                s.tick()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield services
    stop.set()
    thread.join()


def _prometheus(workdir: Path, services: dict[str, StandIn]) -> tuple[Server, int]:
    jobs = yaml.safe_load((OPS / "ecomind-services.yml").read_text())["scrape_configs"]
    for job in jobs:  # the shipped jobs and labels, pointed at the stand-ins
        component = job["static_configs"][0]["labels"]["ecomind_component"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{services[component].port}"]
    sidecar = yaml.safe_load((OPS / "prometheus.yml").read_text())["scrape_configs"][0]
    sidecar["static_configs"][0]["targets"] = [f"127.0.0.1:{services['streams'].port}"]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((OPS / "rules").glob("*.yml"))],
        "scrape_configs": [*jobs, sidecar],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus")
    assert binary, "prometheus comes with Debian's prometheus package (scripts/setup installs it)"
    port = free_port()
    argv = [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    server = Server("prometheus", argv, workdir / "prometheus.log").start()
    wait_port(port, server.proc, 30, server.log_path)
    return server, port


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _values(port: int, expr: str) -> dict[str, float]:
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in _query(port, expr)}


def test_every_service_panel_query_returns_data(stand_ins: dict[str, StandIn], workdir: Path) -> None:
    prom, port = _prometheus(workdir / "prom-services", stand_ins)
    try:
        for title, expr in panel_queries("ecomind-gateway", "ecomind-api", "ecomind-worker"):
            wait_until(partial(_query, port, expr), 60, 0.5, what=f"data for panel {title!r}: {expr}")
        for uid, values in RELEASE.items():
            for title, expr in _release_queries(uid, **values):
                assert _query(port, expr), f"no data for panel {title!r} of the release: {expr}"
            other = {name: "other-release" for name in values}
            for title, expr in _release_queries(uid, **other):
                assert _query(port, expr) == [], f"another release's panel {title!r} shows this one: {expr}"
        exact = {
            ("ecomind-gateway", "Instances up"): [1.0],
            ("ecomind-api", "Instances up"): [1.0],
            ("ecomind-worker", "Instances up"): [1.0],
            ("ecomind-api", "Database pool"): [float(POOL_SIZE), float(POOL_SIZE - 3)],
            ("ecomind-worker", "Kafka lag (messages)"): [12.0],
            ("ecomind-worker", "Lag (age of oldest unconsumed record)"): [2.5],
        }
        for (uid, title), want in exact.items():
            exprs = _panel(uid, title)
            assert [v for expr in exprs for v in _values(port, expr).values()] == want, exprs
        (connections, _) = _panel("ecomind-gateway", "Kafka and Redis connections")
        brokers = _values(port, connections)
        assert sorted(json.loads(k)["broker"] for k in brokers) == ["1", "2", "3"]
        # Ratios the stand-ins fix, within the rounding of rate() over moving scrapes.
        worker_expr = dict(panel_queries("ecomind-worker"))["Failure ratio"]
        (ratio,) = _values(port, worker_expr).values()
        assert abs(ratio - 1 / 31) < 0.005, ratio
        (p95,) = _values(port, dict(panel_queries("ecomind-gateway"))["Request latency p95"]).values()
        assert 0.025 <= p95 <= 0.05, p95  # every request took 0.03 s: the 0.025-0.05 bucket
    finally:
        prom.stop()
