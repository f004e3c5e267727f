"""Cost per event at full speed, and a fleet of replicas on one Redis.

python -m bench.fleet                    # raw and enriched alone (1 replica), then 1, 2 and 4 replicas
python -m bench.fleet --events 100000    # fewer events per measurement

Full speed means a backlog: the replicas join the group on empty topics, are stopped (SIGSTOP) while the
workload is produced, and are let go together; CPU (utime + stime from /proc) is counted from then until
the tables hold every event. Their session timeout is raised so that the stop does not cost them their
partitions. The values on the exporter's /metrics are checked against the workload's truth.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync

from bench.procstat import cpu_seconds
from bench.runners import sidecar_env
from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, Truth, build
from tables.keys import Keys

# Long enough to survive the stop while the backlog is produced; heartbeats every quarter of it.
SESSION_TIMEOUT_MS = 120_000
Plan = list[tuple[str, list[bytes]]]


@dataclass
class FleetRow:
    name: str
    replicas: int
    events: int
    seconds: float
    sidecar_cpu_s: float
    redis_cpu_s: float
    note: str = ""

    @property
    def sidecar_us_per_event(self) -> float:
        return 1e6 * self.sidecar_cpu_s / self.events if self.events else 0.0

    @property
    def redis_us_per_event(self) -> float:
        return 1e6 * self.redis_cpu_s / self.events if self.events else 0.0

    @property
    def redis_share(self) -> float:
        total = self.sidecar_cpu_s + self.redis_cpu_s
        return self.redis_cpu_s / total if total else 0.0

    @property
    def redis_saturates_at(self) -> float:
        """Events/s at which Redis's one command thread would be busy all the time."""
        return 1e6 / self.redis_us_per_event if self.redis_us_per_event else 0.0


def table(rows: list[FleetRow]) -> str:
    lines = [
        "| run | replicas | events | wall s | sidecar CPU µs/event | Redis CPU µs/event | Redis share of CPU "
        "| one Redis core saturates at events/s | values |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.replicas} | {r.events:,} | {r.seconds:.1f} | {r.sidecar_us_per_event:.2f} "
            f"| {r.redis_us_per_event:.2f} | {r.redis_share:.0%} | {r.redis_saturates_at:,.0f} | {r.note} |"
        )
    return "\n".join(lines)


def run_phases(
    workdir: Path,
    bootstrap: str,
    redis: LocalRedis,
    replicas: int,
    partitions: int,
    phases: list[tuple[str, Plan]],
    truth: Truth,
    topics: tuple[str, str],
    **extra_env: str,
) -> list[FleetRow]:
    """Each phase's plan is produced while the replicas are stopped, then folded at full speed."""
    assert redis.server is not None and redis.server.proc is not None
    redis_pid = redis.server.proc.pid
    raw, enriched = topics
    app_id = f"fleet-{uuid.uuid4().hex[:6]}"
    env = sidecar_env(
        bootstrap, redis, app_id, raw, enriched, STREAMS_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS), **extra_env
    )
    procs = [SidecarProc(workdir / f"{app_id}-{i}", env, name=f"replica{i}").start() for i in range(replicas)]
    tables = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    processed_key = Keys(app_id).key("processed")
    rows: list[FleetRow] = []
    try:
        for p in procs:
            p.wait_ready(180)
        wait_until(lambda: _balanced(procs, 2 * partitions), 180, 0.5, what="every replica holding partitions")
        pids = [_pid(p) for p in procs]
        done = 0
        for name, plan in phases:
            for pid in pids:
                os.killpg(pid, signal.SIGSTOP)
            try:
                producer = BackgroundProducer(bootstrap, plan, 1e9)
                producer.run()
                assert producer.error is None, producer.error
            finally:
                cpu0, redis0 = sum(cpu_seconds(pid) for pid in pids), cpu_seconds(redis_pid)
                started = time.monotonic()
                for pid in pids:
                    os.killpg(pid, signal.SIGCONT)
            events = sum(len(values) for _, values in plan)
            done += events
            deadline = time.monotonic() + 600
            while _folded(tables, processed_key) < done and time.monotonic() < deadline:
                time.sleep(0.02)
            seconds = time.monotonic() - started
            cpu1, redis1 = sum(cpu_seconds(pid) for pid in pids), cpu_seconds(redis_pid)
            rows.append(FleetRow(name, replicas, events, seconds, cpu1 - cpu0, redis1 - redis0))
        rows[-1].note = _verdict(procs, truth, raw, enriched)
    finally:
        tables.close()
        for p in procs:
            p.stop()
    return rows


def _pid(p: SidecarProc) -> int:
    assert p.server is not None and p.server.proc is not None
    return p.server.proc.pid


def _folded(tables: redis_sync.Redis, key: str) -> int:
    return sum(int(v) for v in tables.hgetall(key).values())


def _balanced(procs: list[SidecarProc], total: int) -> bool:
    held = []
    for p in procs:
        m = p.scrape()
        held.append(sum(n for (name, _), n in m.items() if name == "ecomind_streams_assigned_partitions"))
    return sum(held) == total and all(held)


def _verdict(procs: list[SidecarProc], truth: Truth, raw: str, enriched: str) -> str:
    """The exporter's values against the truth; other replicas export no business series."""

    def exported() -> object:
        for p in procs:
            m = p.scrape()
            if value(m, "ecomind_daily_active_users") is not None:
                return m
        return None

    try:
        m = wait_until(exported, 60, 0.5, what="an exporter")
    except AssertionError as exc:
        return f"WRONG: {exc}"[:200]
    problems = truth.mismatches(m, raw, enriched)  # type: ignore[arg-type]
    return "values equal the truth" if not problems else "WRONG: " + "; ".join(problems[:3])


def measure(workdir: Path, bootstrap: str, redis: LocalRedis, events: int, fleet: list[int]) -> list[FleetRow]:
    rows = []
    # Per event, raw and enriched apart: one replica, 8 partitions, as the headline benchmark. The raw events
    # come in two halves: in the first, most users show up for the first time today; in the second, every
    # user was seen before, as in a day of real traffic where a user makes many calls.
    raws, enr, truth = build(seed=7, raw_events=2 * events, enriched_every=1, orgs=200, users=50_000, home_org=True)
    half = len(raws) // 2
    topics = _topics(bootstrap, "cost", 8)
    phases = [
        ("raw, first half (users new to the day)", [(topics[0], raws[:half])]),
        ("raw, second half (users seen before)", [(topics[0], raws[half:])]),
        ("enriched only", [(topics[1], enr)]),
    ]
    rows += run_phases(workdir, bootstrap, redis, 1, 8, phases, truth, topics)
    # The same-run baseline: every member sent with every batch, as before the cache of written members.
    topics = _topics(bootstrap, "nocache", 8)
    phases = [(name + ", no cache", [(topics[0], plan[0][1])]) for name, plan in phases[:2]]
    phases.append(("enriched only, no cache", [(topics[1], enr)]))
    rows += run_phases(workdir, bootstrap, redis, 1, 8, phases, truth, topics, STREAMS_SEEN_CACHE_ENTRIES="0")
    # The worst case for Redis: every raw event a user new to the day (org and user drawn apart from
    # 10 million users), so nothing is ever left out.
    new_raws, new_enr, new_truth = build(seed=8, raw_events=events, enriched_every=events, orgs=200, users=10**7)
    topics = _topics(bootstrap, "worst", 8)
    # The one enriched event the workload makes goes along, so that the exported values can be checked.
    phases = [("raw, every event a user new to the day (worst case)", [(topics[0], new_raws), (topics[1], new_enr)])]
    rows += run_phases(workdir, bootstrap, redis, 1, 8, phases, new_truth, topics)
    # A fleet: the first half of the day's traffic, then the second, where each replica has seen its users
    # before (the steady state of a real day, where a user makes many calls).
    half_enr = len(enr) // 2
    for n in fleet:
        topics = _topics(bootstrap, f"fleet{n}", 16)
        phases = [
            ("raw + enriched, 16 partitions, first half", [(topics[0], raws[:half]), (topics[1], enr[:half_enr])]),
            ("raw + enriched, 16 partitions, second half", [(topics[0], raws[half:]), (topics[1], enr[half_enr:])]),
        ]
        rows += run_phases(workdir, bootstrap, redis, n, 16, phases, truth, topics)
    return rows


def _topics(bootstrap: str, kind: str, partitions: int) -> tuple[str, str]:
    uid = uuid.uuid4().hex[:6]
    raw, enriched = f"{kind}.raw.{uid}", f"{kind}.enriched.{uid}"
    make_topics(bootstrap, [raw, enriched], partitions=partitions)
    return raw, enriched


def section(workdir: Path, bootstrap: str, redis: LocalRedis, smoke: bool) -> str:
    events = 5_000 if smoke else 250_000
    rows = measure(workdir, bootstrap, redis, events, [1, 2] if smoke else [1, 2, 4])
    head = (
        f"Cost per event at full speed and a fleet on one Redis: {2 * events:,} raw + {2 * events:,} enriched "
        "events per run (200 orgs, 50,000 users each in one org), folded from a backlog; CPU from /proc, "
        "Redis's own process apart."
    )
    return "\n".join([head, "", table(rows)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    p.add_argument("--events", type=int, default=250_000, help="raw events per run (as many enriched)")
    p.add_argument("--fleet", default="1,2,4", help="replica counts, comma-separated")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-fleet-"))
    broker = (LocalKafka(workdir / "kafka") if args.broker == "kafka" else LocalTansu(workdir / "tansu")).start()
    redis = LocalRedis(workdir / "redis").start(keep_data=False)
    try:
        rows = measure(workdir, broker.bootstrap, redis, args.events, [int(n) for n in args.fleet.split(",")])
    finally:
        redis.stop()
        broker.stop()
    print(table(rows))


if __name__ == "__main__":
    main()
