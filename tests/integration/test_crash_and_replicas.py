"""Counting stays exact across kill -9 restarts, several replicas, rebalances and leader loss."""

from __future__ import annotations

import random
import time
from functools import partial
from pathlib import Path

import pytest

from streams.local.scrape import Samples, summed, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tests.integration.conftest import Names, all_folded, processed, sidecar_env

pytestmark = pytest.mark.integration


KILLS = 5
# A restart after kill -9 takes 6-15 s (the dead member's session must expire before the group
# rebalances); the last tenth of the stream is held back until the fifth restart, so every kill lands
# mid-stream however slow the machine is, and events keep arriving while the sidecar is down.
RATE_PER_S = 4_000


def test_kill_9_at_random_moments_keeps_exact_totals(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=11, raw_events=150_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    assert total >= 200_000
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    # The kill moments are random fractions of the stream plus a random phase within a batch.
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    floors = sorted(int(rng.uniform(0.03, 0.85) * total) for _ in range(KILLS))
    producer = BackgroundProducer(
        broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], RATE_PER_S, hold_back=total // 10
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        producer.start()
        kills_at: list[float] = []
        for floor in floors:
            wait_until(partial(_at_least, proc, names, floor), 120, what=f"progress past {floor} (seed {seed})")
            time.sleep(rng.uniform(0, 0.3))
            at_kill = processed(proc.scrape(), names)
            proc.kill()
            assert at_kill < total, f"the kill must land mid-stream (seed {seed})"
            kills_at.append(at_kill)
            proc.start()
            proc.wait_ready()
        producer.release()
        producer.join(180)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 120, what="all events folded after the kills")
        assert len(kills_at) == KILLS
        assert truth.mismatches(final, names.raw, names.enriched) == [], f"seed {seed}, kills at {kills_at}"
        assert value(final, "ecomind_streams_batch_conflicts_total") == 0.0
    finally:
        proc.stop()


def _at_least(proc: SidecarProc, names: Names, floor: int) -> float | None:
    done = processed(proc.scrape(), names)
    return done if done >= floor else None


def test_two_replicas_sum_to_exact_totals_through_rebalances_and_leader_loss(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=12, raw_events=150_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    assert total >= 200_000
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    a = SidecarProc(workdir / names.app_id, env, name="a").start()
    b = SidecarProc(workdir / names.app_id, env, name="b").start()
    replicas = [a, b]
    exporters_seen: list[int] = []

    def scrape_all() -> list[Samples]:
        scrapes = [r.scrape() for r in replicas if r.running()]
        exporters_seen.append(sum(1 for s in scrapes if value(s, "ecomind_daily_active_users") is not None))
        return scrapes

    try:
        a.wait_ready()
        b.wait_ready()
        wait_until(
            lambda: (
                summed(scrape_all(), "ecomind_streams_assigned_partitions", topic=names.raw) == 4
                and all(
                    (value(s, "ecomind_streams_assigned_partitions", topic=names.raw) or 0) > 0 for s in scrape_all()
                )
            ),
            60,
            what="both replicas hold partitions",
        )
        plan = [(names.raw, raws), (names.enriched, enriched)]
        producer = BackgroundProducer(broker.bootstrap, plan, RATE_PER_S, hold_back=total // 10)
        producer.start()
        wait_until(lambda: _summed_processed(scrape_all(), names) >= total // 4, 90, what="a quarter folded")

        leader = next(r for r in replicas if value(r.scrape(), "ecomind_streams_exporter_leader") == 1.0)
        follower = b if leader is a else a
        at_kill = _summed_processed(scrape_all(), names)
        leader.kill()
        assert at_kill < total, "the leader must die mid-stream"
        replicas = [follower]
        wait_until(
            lambda: value(follower.scrape(), "ecomind_streams_exporter_leader") == 1.0,
            30,
            what="the survivor takes the exporter lease",
        )
        wait_until(lambda: _summed_processed(scrape_all(), names) >= total // 2, 90, what="half folded")

        leader.start()  # rejoins: a second rebalance while events flow
        replicas = [a, b]
        leader.wait_ready()
        wait_until(lambda: _summed_processed(scrape_all(), names) >= total * 7 // 10, 90, what="70 % folded")
        at_kill = _summed_processed(scrape_all(), names)
        follower.kill()  # now the other one, whichever holds the lease
        assert at_kill < total, "the second kill must land mid-stream"
        replicas = [leader]
        wait_until(lambda: _summed_processed(scrape_all(), names) >= total * 8 // 10, 90, what="80 % folded")
        follower.start()
        replicas = [a, b]
        follower.wait_ready()
        producer.release()
        producer.join(180)
        assert producer.error is None and producer.sent == total
        wait_until(lambda: _summed_processed(scrape_all(), names) >= total, 120, what="all folded")
        exporters_seen.clear()
        scrapes = wait_until(lambda: _settled(scrape_all(), names), 60, what="both replicas hold partitions")
        assert sum(value(s, "ecomind_streams_exporter_leader") or 0.0 for s in scrapes) == 1.0
        exporting = [s for s in scrapes if value(s, "ecomind_daily_active_users") is not None]
        assert len(exporting) == 1
        assert truth.mismatches(exporting[0], names.raw, names.enriched) == []
        assert summed(scrapes, "ecomind_daily_active_users") == float(len(truth.users))
        assert max(exporters_seen) == 1, "two replicas exported the same value at once"
    finally:
        for r in (a, b):
            r.stop()


def _summed_processed(scrapes: list[Samples], names: Names) -> float:
    return summed(scrapes, "ecomind_streams_events_processed_total", topic=names.raw) + summed(
        scrapes, "ecomind_streams_events_processed_total", topic=names.enriched
    )


def _settled(scrapes: list[Samples], names: Names) -> list[Samples] | None:
    held = [value(s, "ecomind_streams_assigned_partitions", topic=names.raw) or 0 for s in scrapes]
    return scrapes if len(scrapes) == 2 and sum(held) == 4 and all(held) else None
