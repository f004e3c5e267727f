"""Real components for the integration suite: a broker (Apache Kafka by default) and redis-server.

STREAMS_TEST_BROKER=tansu runs the same suite against the embedded Tansu broker.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.brokers import KafkaCluster, LocalKafka, LocalTansu
from streams.local.prometheus_server import LocalPrometheus
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc

BROKER_KIND = os.environ.get("STREAMS_TEST_BROKER", "kafka")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("it")


@pytest.fixture(scope="session")
def broker(workdir: Path) -> Iterator[LocalKafka | LocalTansu]:
    server: LocalKafka | LocalTansu
    server = LocalTansu(workdir / "tansu") if BROKER_KIND == "tansu" else LocalKafka(workdir / "kafka")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(workdir / "redis").start()
    yield server
    server.stop()


class Names:
    """Topic, group and app names of one test, so tests share the broker without sharing state."""

    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:8]
        self.raw = f"raw.{uid}"
        self.enriched = f"enriched.{uid}"
        self.app_id = f"it-{uid}"
        self.watch_group = f"worker-{uid}"


# The sidecars run on UTC days (the default STREAMS_TIMEZONE) and the tests' truths count "today" from
# the events they generate: a test that ran across midnight would compare two days. The longest test of one
# sidecar's day takes a few minutes.
DAY_MARGIN_S = 360


def before_midnight_s(now_s: float) -> float:
    """Seconds from `now_s` to the next UTC midnight."""
    return 86_400 - now_s % 86_400


@pytest.fixture
def names() -> Names:
    """A test's own names, given out within one UTC day: a test begun within DAY_MARGIN_S of midnight waits
    for it to pass first."""
    left = before_midnight_s(time.time())
    if left < DAY_MARGIN_S:
        time.sleep(left + 2)
    return Names()


def sidecar_env(
    broker: LocalKafka | LocalTansu | KafkaCluster, redis: LocalRedis, names: Names, **extra: str
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "REDIS_URL": redis.url,
        "STREAMS_APP_ID": names.app_id,
        "STREAMS_RAW_TOPIC": names.raw,
        "STREAMS_ENRICHED_TOPIC": names.enriched,
        "STREAMS_WATCH_GROUP": names.watch_group,
        "STREAMS_LAG_INTERVAL_SECONDS": "0.5",
        "STREAMS_LEADER_LEASE_SECONDS": "3",
        "STREAMS_SESSION_TIMEOUT_MS": "6000",
        # LocalPrometheus scrapes every second; a test without one has no scraper at all, and then the
        # exporter hand-over has nothing to wait for. A test with another interval says so.
        "STREAMS_SCRAPE_INTERVAL_SECONDS": "1",
    }
    env.update(extra)
    return env


def panel_queries(*boards: str) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables at "All") of every panel on the given dashboards (by
    default the two the sidecar feeds), as ops/grafana/boards.py defines them."""
    path = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "boards.py"
    spec = importlib.util.spec_from_file_location("boards", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries: list[tuple[str, str]] = module.panel_queries(*(boards or ("ecomind-business", "ecomind-pipeline")))
    return queries


# Series of opt-in features or of situations a default run does not have (per-client lag needs
# STREAMS_LAG_MEMBERS; lost records need a log start past a commit; margins need topic configs and unread
# records): test_dashboards_prometheus.py sets each up and checks its panel, other tests skip them.
SITUATIONAL = ("member_lag", "member_partitions", "lost_messages", "retention_margin_seconds")


def prom_equals(prom: LocalPrometheus, expr: str, want: float) -> bool:
    result = prom.query(expr)
    return bool(result) and float(result[0]["value"][1]) == want  # type: ignore[index]


def promtool_accepts(body: bytes) -> None:
    """`promtool check metrics`: the text format parses and the names follow Prometheus' conventions."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/setup (Debian package prometheus)"
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its PKCS#8 key, made with openssl."""
    cert, key = directory / "server.crt", directory / "server.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True)
    return cert, key


def processed(m: Samples, names: Names) -> float:
    """Valid events folded from both input topics, as one replica's scrape shows them."""
    return sum(value(m, "ecomind_streams_events_processed_total", topic=t) or 0.0 for t in (names.raw, names.enriched))


def summed_processed(scrapes: list[Samples], names: Names) -> float:
    """Valid events folded from both input topics, summed over replicas' scrapes."""
    return sum(processed(m, names) for m in scrapes)


def leader_of(replicas: list[SidecarProc]) -> SidecarProc:
    """The replica holding the exporter lease."""
    return next(r for r in replicas if value(r.scrape(), "ecomind_streams_exporter_leader") == 1.0)


def at_least(proc: SidecarProc, names: Names, floor: int) -> float | None:
    """Events folded, once they reach `floor` (for wait_until)."""
    done = processed(proc.scrape(), names)
    return done if done >= floor else None


def all_folded(proc: SidecarProc, names: Names, total: int) -> Samples | None:
    """The scrape, once it shows `total` events folded (for wait_until)."""
    m = proc.scrape()
    return m if processed(m, names) >= total else None
