"""Cost of measuring many consumer groups: probe cycle time and /metrics time, values checked exactly.

python -m bench.lag_probe            # 200 groups over 50 topics of 8 partitions, Apache Kafka
python -m bench.lag_probe --smoke    # 20 groups over 5 topics: what CI runs so that this cannot rot

Each topic has four groups at different offsets (one caught up, three behind by known amounts), so a
probe cycle needs several fetch rounds. Targets: cycle <= 5 s, /metrics p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.clients import build_clients
from streams.lag.model import LagSnapshot
from streams.lag.probe import LagProbe
from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import create_topics

CYCLE_TARGET_S, SCRAPE_P99_TARGET_S = 5.0, 0.100
RECORDS_PER_PARTITION = 40
BEHIND = (0, 3, 17, 40)  # messages behind the end for the four groups of a topic


def truth(topics: int, partitions: int) -> dict[str, dict[tuple[str, int], int]]:
    """group -> (topic, partition) -> committed offset."""
    out: dict[str, dict[tuple[str, int], int]] = {}
    for t in range(topics):
        for k, behind in enumerate(BEHIND):
            out[f"bench-{t:03d}-{k}"] = {
                (f"lagbench.{t:03d}", p): RECORDS_PER_PARTITION - min(RECORDS_PER_PARTITION, behind + p % 2)
                for p in range(partitions)
            }
    return out


async def prepare(bootstrap: str, topics: int, partitions: int) -> dict[str, dict[tuple[str, int], int]]:
    names = [f"lagbench.{t:03d}" for t in range(topics)]
    await create_topics(bootstrap, names, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    old = int(time.time() * 1000) - 300_000
    try:
        futures = [
            await producer.send(name, b"x" * 100, partition=p, timestamp_ms=old + i)
            for name in names
            for p in range(partitions)
            for i in range(RECORDS_PER_PARTITION)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    want = truth(topics, partitions)
    limit = asyncio.Semaphore(16)

    async def commit(group: str, offsets: dict[tuple[str, int], int]) -> None:
        async with limit:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await consumer.start()
            try:
                tps = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
                consumer.assign(list(tps))
                await consumer.commit(tps)
            finally:
                await consumer.stop()

    await asyncio.gather(*(commit(g, o) for g, o in want.items()))
    return want


def check(snap: LagSnapshot, want: dict[str, dict[tuple[str, int], int]]) -> list[str]:
    wrong = []
    for group, offsets in want.items():
        g = snap.groups.get(group)
        if g is None:
            wrong.append(f"{group} missing")
            continue
        got = {(p.topic, p.partition): p.lag_messages for p in g.partitions}
        expected = {tp: RECORDS_PER_PARTITION - o for tp, o in offsets.items()}
        if got != expected:
            wrong.append(f"{group}: {got} != {expected}")
        if any(p.lag_messages > 0 and not p.lag_seconds for p in g.partitions):
            wrong.append(f"{group}: messages wait with an age of 0 or unknown")
    return wrong


async def probe_cycles(bootstrap: str, want: dict[str, dict[tuple[str, int], int]], cycles: int) -> list[float]:
    admin, consumer = build_clients(bootstrap, {})
    probe = LagProbe(admin, consumer, "bench-000-0", "lagbench.000", re.compile("bench-.*"), fetch_timeout_ms=10_000)
    await probe.start()
    times = []
    try:
        for _ in range(cycles):
            started = time.monotonic()
            snap = await probe.measure()
            times.append(time.monotonic() - started)
            print("cycle phases (s):", {k: round(v, 3) for k, v in snap.phases_s.items()})
            wrong = check(snap, want)
            if wrong:
                raise SystemExit("WRONG lag values: " + "; ".join(wrong[:5]))
    finally:
        await probe.stop()
    return times


def scrape_times(
    workdir: Path, broker: LocalKafka | LocalTansu, redis: LocalRedis, groups: int, n: int
) -> tuple[list[float], float, int]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "REDIS_URL": redis.url,
        "STREAMS_APP_ID": "lagbench-sidecar",
        "STREAMS_RAW_TOPIC": "lagbench.raw",
        "STREAMS_ENRICHED_TOPIC": "lagbench.enriched",
        "STREAMS_WATCH_GROUP": "bench-000-0",
        "STREAMS_LAG_GROUPS": "bench-.*",
        "STREAMS_LAG_INTERVAL_SECONDS": "5",
    }
    proc = SidecarProc(workdir / "sidecar", env).start()
    try:
        proc.wait_ready()

        def measured() -> bool:
            m = proc.scrape()
            return len([k for k in m if k[0] == "ecomind_consumergroup_members"]) >= groups

        wait_until(measured, 120, 0.5, what="every group measured by the sidecar")
        time.sleep(12)  # two more cycles: the first one also looks up every group's coordinator
        sidecar_cycle_s = (
            value(proc.scrape(), "ecomind_streams_lag_probe_duration_seconds", kafka_cluster="default") or 0.0
        )
        times, size = [], 0
        for _ in range(n):
            started = time.monotonic()
            status, body = proc.get("/metrics")
            times.append(time.monotonic() - started)
            assert status == 200
            size = len(body)
            time.sleep(0.02)  # scrapes interleave with probe cycles, as Prometheus' would
        return times, sidecar_cycle_s, size
    finally:
        proc.stop()


def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while fresh topics elect leaders
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topics", type=int, default=50)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--scrapes", type=int, default=300)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.topics, args.cycles, args.scrapes = 5, 2, 30
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-lagbench-"))
    broker = LocalKafka(workdir / "kafka").start()
    redis = LocalRedis(workdir / "redis").start(keep_data=False)
    try:
        want = asyncio.run(prepare(broker.bootstrap, args.topics, args.partitions))
        cycles = asyncio.run(probe_cycles(broker.bootstrap, want, args.cycles))
        scrapes, sidecar_cycle_s, size = scrape_times(workdir, broker, redis, len(want), args.scrapes)
    finally:
        redis.stop()
        broker.stop()
    p99 = statistics.quantiles(scrapes, n=100)[98] if len(scrapes) >= 2 else scrapes[0]
    steady = cycles[1:] or cycles
    print(
        f"Lag probe: {len(want)} groups over {args.topics} topics x {args.partitions} partitions "
        f"({len(want) * args.partitions} group-partitions), Apache Kafka, all values exact.\n"
        f"| measure | value | target |\n|---|---:|---:|\n"
        f"| probe cycle, first (coordinator lookups) | {cycles[0]:.2f} s | |\n"
        f"| probe cycle, steady max of {len(steady)} | {max(steady):.2f} s | <= {CYCLE_TARGET_S:.0f} s |\n"
        f"| probe cycle inside the sidecar | {sidecar_cycle_s:.2f} s | <= {CYCLE_TARGET_S:.0f} s |\n"
        f"| /metrics p50 ({len(scrapes)} scrapes, {size / 1024:.0f} KiB) | "
        f"{statistics.median(scrapes) * 1000:.1f} ms | |\n"
        f"| /metrics p99 | {p99 * 1000:.1f} ms | <= {SCRAPE_P99_TARGET_S * 1000:.0f} ms |"
    )
    if max(steady) > CYCLE_TARGET_S or sidecar_cycle_s > CYCLE_TARGET_S or p99 > SCRAPE_P99_TARGET_S:
        print("target missed")


if __name__ == "__main__":
    main()
