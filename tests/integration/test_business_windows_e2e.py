"""The second set of business metrics (weekly/monthly actives, users per org, tokens, energy by model)
stays exact across kill -9 mid-stream, two replicas with the leader killed, and Redis restarted empty,
against the truth computed from the generated events (events spread over 35 days back and hours ahead)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tests.integration.conftest import Names, all_folded, leader_of, processed, sidecar_env
from tests.integration.kill_loop import Replicas, kill_mid_stream

pytestmark = pytest.mark.integration

RATE_PER_S = 3_000
SPREAD = 0.4  # share of events dated on other days


def test_kill_9_mid_stream_keeps_the_windows_and_todays_breakdowns_exact(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=21, raw_events=60_000, enriched_every=3, spread=SPREAD)
    total = truth.raw_count + truth.enriched_count
    assert truth.beyond_windows > 0 and len(truth.days_by_user) > 1000
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    floors = sorted(int(rng.uniform(0.05, 0.8) * total) for _ in range(3))
    producer = BackgroundProducer(
        broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], RATE_PER_S, hold_back=total // 10
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        producer.start()
        final = kill_mid_stream(proc, producer, names, total, floors, rng, seed).final
        assert truth.mismatches(final, names.raw, names.enriched) == [], f"seed {seed}"
        assert truth.business_mismatches(final, names.raw) == [], f"seed {seed}"
        # Not vacuous: the windows see more than today, and the late events were really late.
        assert (value(final, "ecomind_monthly_active_users") or 0) > (value(final, "ecomind_weekly_active_users") or 0)
        assert (value(final, "ecomind_weekly_active_users") or 0) > (value(final, "ecomind_daily_active_users") or 0)
    finally:
        proc.stop()


def test_two_replicas_export_exact_windows_through_leader_loss(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=22, raw_events=60_000, enriched_every=3, spread=SPREAD)
    total = truth.raw_count + truth.enriched_count
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    pair = Replicas(workdir / names.app_id, env, names)
    try:
        pair.wait_ready()
        producer = BackgroundProducer(
            broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], RATE_PER_S, hold_back=total // 10
        )
        producer.start()
        pair.wait_processed(total // 3, "a third folded")
        leader = leader_of(pair.up)
        pair.kill(leader, total, "the leader's death")
        pair.wait_processed(total * 2 // 3, "two thirds folded by the survivor")
        pair.restart(leader)
        pair.finish(producer, total)

        # Exactly one replica exports the business families; `sum()` over replicas is the truth.
        def one_exporter() -> list[Samples] | None:
            scrapes = pair.scrape_all()
            exporting = [m for m in scrapes if value(m, "ecomind_weekly_active_users") is not None]
            return scrapes if len(exporting) == 1 else None

        scrapes = wait_until(one_exporter, 60, what="one exporter")
        exporting = next(m for m in scrapes if value(m, "ecomind_weekly_active_users") is not None)
        assert truth.business_mismatches(exporting, names.raw) == []
    finally:
        pair.stop()


def test_redis_restarted_empty_recounts_the_windows_exactly(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"redis-windows-{names.app_id}"
    redis = LocalRedis(home / "redis").start()
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=23, raw_events=40_000, enriched_every=3, spread=SPREAD)
    total = truth.raw_count + truth.enriched_count
    proc = SidecarProc(home, sidecar_env(broker, redis, names, STREAMS_BATCH_MAX_RECORDS="2000")).start()
    producer = BackgroundProducer(broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], RATE_PER_S)
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: processed(proc.scrape(), names) >= total // 3, 90, what="a third folded")
        redis.stop()
        redis.wipe()
        redis.start()
        producer.join(180)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 180, what="all events folded after the restart")
        assert truth.business_mismatches(final, names.raw) == []
        assert (value(final, "ecomind_streams_batch_conflicts_total") or 0) >= 1, "the empty store was noticed"
    finally:
        proc.stop()
        redis.stop()
