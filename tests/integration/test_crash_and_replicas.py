"""Counting stays exact across kill -9 restarts, several replicas, rebalances and leader loss."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.local.scrape import Samples, summed, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tests.integration.conftest import Names, leader_of, sidecar_env
from tests.integration.kill_loop import Replicas, kill_mid_stream

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
    # The conflict counter lives and dies with its process: one entry per process, from its last scrape.
    conflicts: list[float | None] = []
    try:
        proc.wait_ready()
        producer.start()
        kills = kill_mid_stream(proc, producer, names, total, floors, rng, seed)
        final, kills_at = kills.final, kills.at
        conflicts = [value(last, "ecomind_streams_batch_conflicts_total") for last in kills.last_scrapes]
        conflicts.append(value(final, "ecomind_streams_batch_conflicts_total"))
        assert len(kills_at) == KILLS
        assert truth.mismatches(final, names.raw, names.enriched) == [], f"seed {seed}, kills at {kills_at}"
        # No batch refused in any of the six processes: their counters as last scraped, and, for what a
        # process did between its last scrape and its kill, the log that every process appended to.
        assert conflicts == [0.0] * (KILLS + 1), f"refused batches per process: {conflicts} (seed {seed})"
        assert proc.server is not None
        log = proc.server.log_path.read_text(errors="replace")
        assert log.count("metrics at ") == KILLS + 1, "the log must hold every process's lines"
        refused = [line for line in log.splitlines() if "batch refused" in line]
        assert refused == [], f"seed {seed}: {refused[:3]}"
    finally:
        proc.stop()


def test_two_replicas_sum_to_exact_totals_through_rebalances_and_leader_loss(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=12, raw_events=150_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    assert total >= 200_000
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    pair = Replicas(workdir / names.app_id, env, names)
    watch = ExporterWatch(pair.both)

    try:
        watch.start()
        pair.wait_ready()
        wait_until(
            lambda: (
                summed(pair.scrape_all(), "ecomind_streams_assigned_partitions", topic=names.raw) == 4
                and all(
                    (value(s, "ecomind_streams_assigned_partitions", topic=names.raw) or 0) > 0
                    for s in pair.scrape_all()
                )
            ),
            60,
            what="both replicas hold partitions",
        )
        plan = [(names.raw, raws), (names.enriched, enriched)]
        producer = BackgroundProducer(broker.bootstrap, plan, RATE_PER_S, hold_back=total // 10)
        producer.start()
        pair.wait_processed(total // 4, "a quarter folded")

        watch.phase = "first kill"
        leader = leader_of(pair.up)
        follower = pair.b if leader is pair.a else pair.a
        pair.kill(leader, total, "the leader's death")
        wait_until(
            lambda: value(follower.scrape(), "ecomind_streams_exporter_leader") == 1.0,
            30,
            what="the survivor takes the exporter lease",
        )
        pair.wait_processed(total // 2, "half folded")

        watch.phase = "first restart"
        pair.restart(leader)
        pair.wait_processed(total * 7 // 10, "70 % folded")
        watch.phase = "second kill"
        pair.kill(follower, total, "the second kill")  # now the other one, whichever holds the lease
        pair.wait_processed(total * 8 // 10, "80 % folded")
        watch.phase = "second restart"
        pair.restart(follower)
        pair.finish(producer, total)
        watch.phase = "settled"
        scrapes = wait_until(lambda: _settled(pair.scrape_all(), names), 60, what="both replicas hold partitions")
        assert sum(value(s, "ecomind_streams_exporter_leader") or 0.0 for s in scrapes) == 1.0
        exporting = [s for s in scrapes if _business(s)]
        assert len(exporting) == 1
        assert truth.mismatches(exporting[0], names.raw, names.enriched) == []
        assert summed(scrapes, "ecomind_daily_active_users") == float(len(truth.users))
        wait_until(lambda: watch.rounds["settled"] >= 5, 30, what="a few rounds of the watch once settled")
    finally:
        watch.stop()
        pair.stop()
    # Checked throughout, kills and restarts included, not only once settled.
    assert watch.failure is None, watch.failure
    by_phase = Counter(phase for phase, _ in watch.doubles)
    assert watch.doubles == [], f"two replicas exported at once, rounds per phase {by_phase}: {watch.doubles[:3]}"
    phases = ("start", "first kill", "first restart", "second kill", "second restart", "settled")
    assert all(watch.rounds[p] >= 5 for p in phases), f"too few rounds to cover each phase: {watch.rounds}"
    assert watch.exporting_rounds >= 20, "the watch must have seen an exporter, or it proves nothing"


# Business series: the shared tables' values, which `sum()` over the replicas would count twice if two
# replicas exposed them at once. Replica series (leader gauge, readiness...) are per process by design.
BUSINESS = (
    "ecomind_daily_active_users",
    "ecomind_daily_active_orgs",
    "ecomind_events_ingested_total",
    "ecomind_api_calls_total",
    "ecomind_total_kwh_today",
    "ecomind_streams_events_processed_total",
)


def _business(s: Samples) -> set[str]:
    return {name for name, _ in s if name in BUSINESS}


class ExporterWatch(threading.Thread):
    """Scrapes every running replica about every 100 ms for the whole test, and records each round in
    which more than one replica exposed business series.

    A round scrapes the replicas one after the other, a few tens of milliseconds apart. In this test the
    lease only moves away from a replica that was killed (and can no longer answer), and a replica reads
    the lease holder at every scrape, so two exporting answers in one round mean two exporters at once.
    """

    def __init__(self, replicas: list[SidecarProc]) -> None:
        super().__init__(name="exporter-watch", daemon=True)
        self.replicas = replicas
        self.phase = "start"  # set by the test, to show that every phase was watched
        self.rounds: Counter[str] = Counter()
        self.exporting_rounds = 0
        self.doubles: list[tuple[str, str]] = []  # (phase, what was seen)
        self.failure: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.is_set():
                self._round()
                self._done.wait(0.1)
        except Exception as exc:  # surfaced by the test, not lost in the thread
            self.failure = f"{type(exc).__name__}: {exc}"

    def _round(self) -> None:
        exporters, leaders = [], []
        for r in self.replicas:
            if not r.running():
                continue
            try:
                s = r.scrape()
            except (OSError, AssertionError, http.client.HTTPException):
                continue  # starting, stopping or just killed: not answering is not exporting
            if _business(s):
                exporters.append(r.name)
            if value(s, "ecomind_streams_exporter_leader") == 1.0:
                leaders.append(r.name)
        self.rounds[self.phase] += 1
        self.exporting_rounds += bool(exporters)
        if len(exporters) > 1:
            self.doubles.append((self.phase, f"{time.strftime('%H:%M:%S')} {exporters}, leaders {leaders}"))

    def stop(self) -> None:
        self._done.set()
        self.join(30)


def _settled(scrapes: list[Samples], names: Names) -> list[Samples] | None:
    held = [value(s, "ecomind_streams_assigned_partitions", topic=names.raw) or 0 for s in scrapes]
    return scrapes if len(scrapes) == 2 and sum(held) == 4 and all(held) else None
