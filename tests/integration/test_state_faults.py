"""Faults of the state store and of the exporter role: an evicting Redis, a Redis that goes back to an
older snapshot (while the stream is quiet and while it is busy), SIGTERM during a Redis outage, and the
exporter lease moving under a real Prometheus."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import redis as redis_sync

from streams.local.prometheus_server import LocalPrometheus
from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tests.integration.conftest import Names, all_folded, processed, sidecar_env
from tests.integration.kafka_io import Out, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # each test owns and breaks its Redis


def test_an_evicting_redis_makes_the_replica_not_ready(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    redis = LocalRedis(workdir / f"redis-{names.app_id}").start()
    client = redis_sync.Redis.from_url(redis.url)
    client.config_set("maxmemory", "64mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis, names)).start()
    try:
        proc.wait_until_serving()
        wait_until(lambda: value(proc.scrape(), "ecomind_streams_redis_up") == 1.0, 60, what="Redis answering")
        time.sleep(2)  # a few lease rounds
        m = proc.scrape()
        assert value(m, "ecomind_streams_redis_eviction_policy_ok") == 0.0
        assert value(m, "ecomind_streams_ready") == 0.0
        assert proc.get("/ready")[0] == 503
        assert "maxmemory-policy is 'allkeys-lru'" in proc.log_tail(20_000)
        client.config_set("maxmemory-policy", "noeviction")
        proc.wait_ready(30)
        assert value(proc.scrape(), "ecomind_streams_redis_eviction_policy_ok") == 1.0
    finally:
        proc.stop()
        redis.stop()


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_redis_back_from_an_older_snapshot_is_noticed_and_reread(  # type: ignore[no-untyped-def]
    broker, names: Names, workdir: Path, busy: bool
) -> None:
    home = workdir / f"rollback-{names.app_id}"
    redis = LocalRedis(home / "redis").start(keep_data=False)  # RDB only: what a restore brings back
    client = redis_sync.Redis.from_url(redis.url)
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=53, raw_events=30_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    first, second = raws[:10_000], raws[10_000:20_000]
    proc = SidecarProc(home, sidecar_env(broker, redis, names, STREAMS_BATCH_MAX_RECORDS="2000")).start()
    try:
        proc.wait_ready()
        produce(broker.bootstrap, names.raw, [Out(v) for v in first])
        wait_until(lambda: processed(proc.scrape(), names) >= len(first), 90, what="the first part folded")
        client.save()
        shutil.copy(home / "redis" / "dump.rdb", home / "older.rdb")
        produce(broker.bootstrap, names.raw, [Out(v) for v in second])
        wait_until(lambda: processed(proc.scrape(), names) >= 20_000, 90, what="the second part folded")
        rest = BackgroundProducer(broker.bootstrap, [(names.raw, raws[20_000:]), (names.enriched, enriched)], 4_000)
        if not busy:  # everything folded and quiet: no write will ever be refused to give the rollback away
            rest.start()
            rest.join(120)
            wait_until(lambda: all_folded(proc, names, total), 120, what="all folded before the rollback")
        redis.stop()
        shutil.copy(home / "older.rdb", home / "redis" / "dump.rdb")
        redis.start(keep_data=False)
        if busy:
            rest.start()
        rest.join(180)
        assert rest.error is None and rest.sent == len(raws) - 20_000 + len(enriched)
        final = wait_until(lambda: all_folded(proc, names, total), 180, what="everything re-read after the rollback")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert value(final, "ecomind_daily_active_users") == float(len(truth.users))
        proc.wait_ready(60)
        if not busy:
            assert (value(proc.scrape(), "ecomind_streams_state_rewinds_total") or 0) >= 1
    finally:
        proc.stop()
        redis.stop()


def test_sigterm_during_a_redis_outage_exits_in_bounded_time(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"sigterm-{names.app_id}"
    redis = LocalRedis(home / "redis").start()
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=61, raw_events=30_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    env = sidecar_env(broker, redis, names, STREAMS_BATCH_MAX_RECORDS="2000", STREAMS_SHUTDOWN_TIMEOUT_SECONDS="5")
    proc = SidecarProc(home, env).start()
    producer = BackgroundProducer(broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], 3_000)
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: processed(proc.scrape(), names) >= total // 4, 90, what="a quarter folded")
        redis.stop()
        time.sleep(2)  # batch writes are now retrying against a dead Redis
        assert proc.server is not None and proc.server.proc is not None
        asked = time.monotonic()
        proc.server.proc.send_signal(15)
        assert proc.server.proc.wait(timeout=30) == 0, proc.log_tail()
        assert time.monotonic() - asked < 20, "shutdown is bounded by STREAMS_SHUTDOWN_TIMEOUT_SECONDS"
        redis.start()
        producer.join(180)
        assert producer.error is None and producer.sent == total
        proc.start().wait_ready()
        final = wait_until(lambda: all_folded(proc, names, total), 180, what="all folded after the restart")
        # Offsets whose state never reached Redis were not kept anywhere: nothing lost, nothing twice.
        assert truth.mismatches(final, names.raw, names.enriched) == []
    finally:
        proc.stop()
        redis.stop()


def _fleet_now(prom: LocalPrometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def _fleet_over(prom: LocalPrometheus, expr: str, start_s: float) -> list[float]:
    """Every value `expr` had from `start_s` until now, at a quarter of the scrape interval."""
    result = prom.query_range(expr, start_s, time.time(), 0.25)
    return [float(v) for _, v in result[0]["values"]] if result else []  # type: ignore[index, attr-defined]


def _exports(proc: SidecarProc) -> bool:
    return value(proc.scrape(), "ecomind_daily_active_users") is not None


def test_exporter_hand_over_never_double_counts_in_prometheus(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"handover-{names.app_id}"
    redis = LocalRedis(home / "redis").start()
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, _, truth = build(seed=67, raw_events=8_000, enriched_every=4)
    env = sidecar_env(broker, redis, names)
    a = SidecarProc(home / "a", env, name="a").start()
    b = SidecarProc(home / "b", env, name="b").start()
    prom = LocalPrometheus(home / "prom", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], [], interval_s=1.0)
    fleet = f'sum(ecomind_streams_events_processed_total{{topic="{names.raw}"}})'
    try:
        a.wait_ready()
        b.wait_ready()
        produce(broker.bootstrap, names.raw, [Out(v) for v in raws])
        prom.start()
        wait_until(lambda: _fleet_now(prom, fleet) == truth.raw_count, 120, what="Prometheus sees the fleet total")
        for _ in range(2):  # the lease moves twice, each time from a killed exporter
            exporter, successor = (a, b) if _exports(a) else (b, a)
            moved_at = time.time()
            exporter.kill()
            wait_until(lambda s=successor: _exports(s), 60, what="the other replica exporting")  # type: ignore[misc]
            time.sleep(3)  # a few scrapes of the new exporter
            seen = _fleet_over(prom, fleet, moved_at - 5)
            assert seen and max(seen) <= truth.raw_count, f"sum() above the truth during the hand-over: {max(seen)}"
            assert seen[-1] == truth.raw_count
            exporter.start().wait_ready()
    finally:
        prom.stop()
        a.stop()
        b.stop()
        redis.stop()
