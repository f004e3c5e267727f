"""Compressed topics on a real broker: every Kafka codec is read exactly, and a partition whose batches
cannot be read is paused alone while the others go on, then resumes by itself once its codec is back."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tests.integration.conftest import Names, sidecar_env
from tests.integration.kafka_io import Out, produce, produce_transaction

pytestmark = pytest.mark.integration
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]  # one partition each, so one fetch mixes them all


def _events(org: str, n: int, now_ms: int, **extra: object) -> list[bytes]:
    return [raw_event(org, f"{org}-u{i % 7}", now_ms - i, **extra) for i in range(n)]


def _ingested(m: Samples) -> dict[str, float]:
    return {dict(labels)["org_id"]: v for labels, v in series(m, "ecomind_events_ingested_total").items()}


def _when(proc: SidecarProc, want: dict[str, float]) -> Samples | None:
    m = proc.scrape()
    return m if _ingested(m) == want else None


def test_every_codec_is_read_exactly(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=len(CODECS))
    now = int(time.time() * 1000)
    truth: Counter[str] = Counter()
    for partition, codec in enumerate(CODECS):
        org = f"org-{codec or 'none'}"
        events = _events(org, 400 + partition, now)
        produce(broker.bootstrap, names.raw, [Out(e, partition) for e in events], compression=codec)
        truth[org] += len(events)
        enriched = _events(org, 50, now, kwh=0.25, co2_kg=0.125)
        produce(broker.bootstrap, names.enriched, [Out(e, partition) for e in enriched], compression=codec)
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis_server, names)).start()
    try:
        proc.wait_ready()
        m = wait_until(lambda: _when(proc, dict(truth)), 60, what="every codec's events counted")
        for codec in CODECS:
            org = f"org-{codec or 'none'}"
            assert value(m, "ecomind_total_kwh_today", org_id=org) == pytest.approx(12.5)
            assert value(m, "ecomind_total_co2_kg_today", org_id=org) == pytest.approx(6.25)
        assert value(m, "ecomind_daily_active_users") == 7 * len(CODECS)
        assert value(m, "ecomind_streams_fetch_errors_total") == 0.0
        assert series(m, "ecomind_streams_partition_stalled") == {}
    finally:
        proc.stop()


@pytest.mark.kafka_only  # topic-level compression.type and transactions: Apache Kafka
def test_topic_codec_and_compressed_transactions_are_read_exactly(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    # The broker recompresses whatever producers send into the topic's own codec.
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2, configs={"compression.type": "zstd"})
    now = int(time.time() * 1000)
    plain = _events("org-plain", 300, now)
    produce(broker.bootstrap, names.raw, [Out(e, 0) for e in plain], compression=None)
    produce(broker.bootstrap, names.raw, [Out(e, 1) for e in _events("org-lz4", 200, now)], compression="lz4")
    committed = _events("org-txn", 250, now)
    produce_transaction(broker.bootstrap, names.raw, [Out(e, 1) for e in committed], True, compression="lz4")
    aborted = _events("org-aborted", 120, now)
    produce_transaction(broker.bootstrap, names.raw, [Out(e, 0) for e in aborted], False, compression="snappy")
    produce(broker.bootstrap, names.raw, [Out(e, 0) for e in _events("org-after", 30, now)], compression="gzip")
    want = {"org-plain": 300.0, "org-lz4": 200.0, "org-txn": 250.0, "org-after": 30.0}
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis_server, names)).start()
    try:
        proc.wait_ready()
        m = wait_until(lambda: _when(proc, want), 60, what="committed records counted, aborted ones not")
        assert value(m, "ecomind_streams_events_processed_total", topic=names.raw) == sum(want.values())
        assert value(m, "ecomind_streams_fetch_errors_total") == 0.0
    finally:
        proc.stop()


# Stands in for cramjam in one sidecar: present (so aiokafka believes it can read snappy, lz4 and zstd)
# but failing until the flag file exists, then the real library: "the fix deployed" without a restart.
CODEC_SHIM = """
import importlib.machinery, importlib.util, os, sys

_FLAG = os.environ["ECOMIND_TEST_CODEC_FLAG"]
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_real = None


def _load():
    global _real
    if _real is None:
        path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
        spec = importlib.machinery.PathFinder.find_spec("cramjam", path)
        shim, module = sys.modules["cramjam"], importlib.util.module_from_spec(spec)
        sys.modules["cramjam"] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules["cramjam"] = shim
        _real = module
    return _real


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if not os.path.exists(_FLAG):
        from aiokafka.errors import UnsupportedCodecError

        raise UnsupportedCodecError("cramjam is blocked in this test")
    return getattr(_load(), name)
"""


def test_an_unreadable_partition_stalls_alone_and_resumes_by_itself(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=3)
    now = int(time.time() * 1000)
    for p in (0, 1):
        produce(broker.bootstrap, names.raw, [Out(e, p) for e in _events(f"org-p{p}", 500, now)], compression="gzip")
    stalled_events = _events("org-p2", 400, now)
    produce(broker.bootstrap, names.raw, [Out(e, 2) for e in stalled_events], compression="lz4")
    shim = workdir / names.app_id / "codec-shim"
    (shim / "cramjam").mkdir(parents=True)
    (shim / "cramjam" / "__init__.py").write_text(CODEC_SHIM)
    flag = shim / "codec-returns"
    env = sidecar_env(
        broker,
        redis_server,
        names,
        PYTHONPATH=os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        ECOMIND_TEST_CODEC_FLAG=str(flag),
        STREAMS_STALL_MAX_BACKOFF_SECONDS="4",
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        stalled_series = {frozenset({("topic", names.raw), ("partition", "2"), ("reason", "unsupported_codec")}): 1.0}
        m = wait_until(
            lambda: _stalled_while(proc, {"org-p0": 500.0, "org-p1": 500.0}, stalled_series),
            60,
            what="the healthy partitions counted while partition 2 is reported stalled",
        )
        assert (value(m, "ecomind_streams_fetch_errors_total") or 0) >= 3
        status, body = proc.get("/ready")
        ready = orjson.loads(body)
        assert status == 200 and ready["ready"] is True  # one bad batch does not take the replica out
        [stall] = ready["stalled_partitions"]
        assert (stall["topic"], stall["partition"], stall["offset"]) == (names.raw, 2, 0)
        assert stall["reason"] == "unsupported_codec" and "cramjam is blocked" in stall["error"]
        # Healthy partitions keep going at full speed while partition 2 stays paused.
        more = _events("org-p0", 700, now)
        produce(broker.bootstrap, names.raw, [Out(e, 0) for e in more], compression="gzip")
        wait_until(
            lambda: _stalled_while(proc, {"org-p0": 1200.0, "org-p1": 500.0}, stalled_series), 60, what="new events"
        )
        page = proc.get("/")[1].decode()
        assert f"Partition {names.raw}/2" in page and "unsupported_codec" in page

        flag.touch()  # the codec is back: the next retry reads the batch, no restart
        want = {"org-p0": 1200.0, "org-p1": 500.0, "org-p2": 400.0}
        m = wait_until(lambda: _when(proc, want), 60, what="partition 2 resumed by itself")
        assert value(m, "ecomind_daily_active_users") == 21.0
        wait_until(lambda: series(proc.scrape(), "ecomind_streams_partition_stalled") == {}, 30, what="unstalled")
        assert orjson.loads(proc.get("/ready")[1])["stalled_partitions"] == []
    finally:
        proc.stop()


def _stalled_while(
    proc: SidecarProc, want: dict[str, float], stalled: dict[frozenset[tuple[str, str]], float]
) -> Samples | None:
    m = _when(proc, want)
    return m if m is not None and series(m, "ecomind_streams_partition_stalled") == stalled else None
