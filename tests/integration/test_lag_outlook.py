"""Retention margin and time to catch up on a real broker: topic configs read by DescribeConfigs, sizes by
DescribeLogDirs, a real consumer group that speeds up and slows down, each value checked against what
the test computes on its own from what it produced, consumed and timed."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from streams.clients import build_clients
from streams.lag.model import LagSnapshot
from streams.lag.outlook import Outlook, OutlookSettings
from streams.lag.probe import LagProbe
from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import Out, commit_group, commit_group_async, produce, produce_async

CLUSTER = "default"  # the tapped cluster's kafka_cluster label (STREAMS_LAG_CLUSTER_NAME unset)
pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # Tansu has no DescribeConfigs/DescribeLogDirs

DAY_MS = 86_400_000


@pytest.fixture
async def admin(broker) -> AsyncIterator[AIOKafkaAdminClient]:  # type: ignore[no-untyped-def]
    client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await client.start()
    yield client
    await client.close()


def new_probe(bootstrap: str, uid: str, window_s: float) -> LagProbe:
    admin, consumer = build_clients(bootstrap, {})
    return LagProbe(
        admin,
        consumer,
        f"out-{uid}-watched",
        f"out-{uid}-watched-topic",
        include=re.compile(f"out-{uid}-.*"),
        fetch_timeout_ms=5000,
        outlook=Outlook(OutlookSettings(rate_window_s=window_s, retention_refresh_s=300, catch_up_cap_s=86_400)),
    )


PACE_S = 2.0


async def timed(probe: LagProbe) -> tuple[LagSnapshot, float, float]:
    before = time.monotonic()
    snap = await probe.measure()
    return snap, before, time.monotonic()


async def test_retention_margin_by_time_and_size_and_none_where_nothing_expires(
    broker,  # type: ignore[no-untyped-def]
    admin: AIOKafkaAdminClient,
) -> None:
    uid = uuid.uuid4().hex[:8]
    timed_t, forever, compacted, sized = (f"out-{uid}-{w}" for w in ("timed", "forever", "compacted", "sized"))
    await admin.create_topics(
        [
            NewTopic(f"out-{uid}-watched-topic", 1, 1, topic_configs={"retention.ms": str(DAY_MS)}),
            NewTopic(timed_t, 2, 1, topic_configs={"retention.ms": str(DAY_MS)}),
            NewTopic(forever, 1, 1, topic_configs={"retention.ms": "-1"}),
            NewTopic(compacted, 1, 1, topic_configs={"cleanup.policy": "compact", "retention.ms": str(DAY_MS)}),
            NewTopic(sized, 1, 1, topic_configs={"retention.ms": "-1", "retention.bytes": "1000000"}),
        ]
    )
    now = int(time.time() * 1000)
    two_hours_ago = now - 7_200_000
    await produce_async(broker.bootstrap, timed_t, [Out(b"x", 0, two_hours_ago) for _ in range(5)])
    await produce_async(broker.bootstrap, timed_t, [Out(b"y", 1, now) for _ in range(3)])
    await produce_async(broker.bootstrap, forever, [Out(b"z", 0, two_hours_ago) for _ in range(3)])
    # The watched group never commits there: 2 records wait, and its log start gets no margin.
    await produce_async(broker.bootstrap, f"out-{uid}-watched-topic", [Out(b"w", 0, two_hours_ago)] * 2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        await producer.send_and_wait(compacted, b"v", key=b"k", timestamp_ms=two_hours_ago)
    finally:
        await producer.stop()
    payload = b"s" * 1000
    await produce_async(broker.bootstrap, sized, [Out(payload, 0) for _ in range(100)])
    reader, caught_up = f"out-{uid}-reader", f"out-{uid}-caught-up"
    await commit_group_async(broker.bootstrap, reader, timed_t, {0: 2, 1: 3})  # 3 old ones wait on 0; none on 1
    await commit_group_async(broker.bootstrap, reader, forever, {0: 0})
    await commit_group_async(broker.bootstrap, reader, compacted, {0: 0})
    await commit_group_async(broker.bootstrap, reader, sized, {0: 10})
    await commit_group_async(broker.bootstrap, caught_up, timed_t, {0: 5, 1: 3})

    probe = new_probe(broker.bootstrap, uid, window_s=0.1)
    # The values are under test here, not the cycle's short wait for the configs (0.5 s, then the next
    # cycle uses the answer): on a loaded machine the first answer can take longer than that.
    probe.outlook.reader.wait_s = 10.0
    await probe.start()
    try:
        first, before_first, after_first = await timed(probe)
        await produce_async(broker.bootstrap, sized, [Out(payload, 0) for _ in range(50)])
        second, before_second, after_second = await timed(probe)
    finally:
        await probe.stop()
    assert first.errors == [] and second.errors == []
    margins = second.outlook.margins if second.outlook else {}
    mine = {k: v for k, v in margins.items() if k[0] == reader}
    # Only the unread partition of the time-limited topic, and the size-limited one: retention.ms=-1,
    # compaction and caught-up partitions give no series.
    assert sorted(mine) == [(reader, sized, 0, "size"), (reader, timed_t, 0, "time")]
    assert not any(k[0] == caught_up for k in margins)
    watched = second.groups[f"out-{uid}-watched"]
    assert [(p.lag_messages, p.committed) for p in watched.partitions] == [(2, False)]
    assert not any(k[0] == watched.group for k in margins)
    # The record at offset 2 is two hours old under a day's retention: 22 hours left, less the test's time.
    age_bound = time.time() - two_hours_ago / 1000
    assert 86_400 - age_bound <= mine[(reader, timed_t, 0, "time")] <= 86_400 - 7_200
    # Size: about 1,000,000 / (1,000 bytes + record overhead) records fit; 140 are unread; 50 arrived
    # between the two cycles. Bounds from the test's own clock and from the records' size on disk.
    lag = 150 - 10
    rate_low, rate_high = 50 / (after_second - before_first), 50 / (before_second - after_first)
    fits_low, fits_high = 1_000_000 / 1_100, 1_000_000 / 1_000
    estimate = mine[(reader, sized, 0, "size")]
    assert (fits_low - lag) / rate_high <= estimate <= (fits_high - lag) / rate_low, estimate
    assert first.outlook is not None and not any(k[3] == "size" for k in first.outlook.margins)  # no rate yet


class Consumer:
    """A real member of a group, consuming and committing exactly as many records as asked."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.inner = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self.consumed = 0

    async def take(self, count: int) -> None:
        got = 0
        while got < count:
            batch = await self.inner.getmany(timeout_ms=1000, max_records=count - got)
            got += sum(len(records) for records in batch.values())
        await self.inner.commit()
        self.consumed += got


async def test_records_deleted_before_the_group_read_them_are_counted_lost_not_given_a_margin(
    broker,  # type: ignore[no-untyped-def]
    admin: AIOKafkaAdminClient,
) -> None:
    uid = uuid.uuid4().hex[:8]
    topic, group = f"out-{uid}-lost", f"out-{uid}-behind"
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": str(DAY_MS)})])
    await produce_async(broker.bootstrap, topic, [Out(b"x", 0) for _ in range(10)])
    await commit_group_async(broker.bootstrap, group, topic, {0: 2})
    # What retention does to an old segment, done at once: the log now starts at 6, four records the group
    # never read are gone.
    await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(6)})
    probe = new_probe(broker.bootstrap, uid, window_s=0.1)
    probe.outlook.reader.wait_s = 10.0  # the values are under test, not the cycle's short wait for configs
    await probe.start()
    try:
        snap = await probe.measure()
    finally:
        await probe.stop()
    assert snap.errors == [] and snap.outlook is not None
    assert snap.outlook.lost == {(group, topic, 0): 4}
    # No margin: the oldest unread record is already gone, so "time until it goes" means nothing.
    assert [k for k in snap.outlook.margins if k[0] == group] == []


async def test_catch_up_rises_when_the_consumer_slows_and_falls_when_it_speeds_up(
    broker,  # type: ignore[no-untyped-def]
    admin: AIOKafkaAdminClient,
) -> None:
    uid = uuid.uuid4().hex[:8]
    topic, group = f"out-{uid}-work", f"out-{uid}-worker"
    await admin.create_topics([NewTopic(f"out-{uid}-watched-topic", 1, 1), NewTopic(topic, 1, 1)])
    total = 3000
    await produce_async(broker.bootstrap, topic, [Out(b"w", 0) for _ in range(total)])
    member = Consumer(broker.bootstrap, topic, group)
    await member.inner.start()
    # A window shorter than the pause between cycles: each rate is the previous cycle's to this one's.
    probe = new_probe(broker.bootstrap, uid, window_s=0.2)
    await probe.start()
    try:
        await member.take(100)
        _, _, last = await timed(probe)
        seen: list[tuple[int, float, float]] = []  # per step: records taken, catch-up, expected
        for step in (200, 200, 40, 40, 200, 200):
            # Cycles a fixed 2 s apart, further than the window, so the records taken set the rate: a slow
            # take or cycle on a loaded machine adds under a second and cannot make 40 records look like 200.
            await member.take(step)
            await asyncio.sleep(max(0.0, last + PACE_S - time.monotonic()))
            snap, _, done = await timed(probe)
            assert snap.outlook is not None and snap.errors == []
            expected = (total - member.consumed) / (step / (done - last))
            seen.append((step, snap.outlook.catch_up[(group, topic)], expected))
            last = done
        # Stopped with records waiting: it never catches up at this rate.
        await asyncio.sleep(0.5)
        snap, _, _ = await timed(probe)
        assert snap.outlook is not None and snap.outlook.catch_up[(group, topic)] == math.inf
        await member.take(total - member.consumed)
        await timed(probe)
        snap, _, _ = await timed(probe)
        assert snap.outlook is not None and snap.outlook.catch_up[(group, topic)] == 0.0
    finally:
        await probe.stop()
        await member.inner.stop()
    # The first cycle's clock reading also covers its DescribeConfigs, read after the rate's sample.
    for i, (step, got, expected) in enumerate(seen):
        assert abs(got - expected) <= (0.15 if i == 0 else 0.02) * expected, (step, got, expected)
    fast1, slow, fast2 = seen[1][1], seen[3][1], seen[5][1]
    assert slow > 2 * fast1 and fast2 < slow / 2, seen


def test_through_the_sidecars_metrics(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """The settings reach the probe, and the families reach /metrics: a one-hour topic, a stopped group."""
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2, configs={"retention.ms": "3600000"})
    two_minutes_ago = int(time.time() * 1000) - 120_000
    produce(broker.bootstrap, names.raw, [Out(b"{}", p, two_minutes_ago) for p in (0, 1) for _ in range(5)])
    produce(broker.bootstrap, names.enriched, [Out(b"{}", p) for p in (0, 1)])
    stopped = f"ext-{names.app_id}-stopped"
    commit_group(broker.bootstrap, stopped, names.raw, {0: 2, 1: 5})
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=f"{names.app_id}|ext-{names.app_id}-.*",
        STREAMS_LAG_RATE_WINDOW_SECONDS="1",
    )
    proc = SidecarProc(workdir / names.app_id, env).start()

    def margin_of(m: Samples) -> float | None:
        labels = {"group": stopped, "topic": names.raw, "partition": "0", "basis": "time", "kafka_cluster": CLUSTER}
        return value(m, "ecomind_consumergroup_retention_margin_seconds", **labels)

    def ready() -> Samples | None:
        m = proc.scrape()
        settled = (
            value(m, "ecomind_consumergroup_catch_up_seconds", group=stopped, topic=names.raw, kafka_cluster=CLUSTER)
            is not None
        )
        own = value(
            m,
            "ecomind_consumergroup_lag",
            group=names.app_id,
            topic=names.enriched,
            partition="1",
            kafka_cluster=CLUSTER,
        )
        margin = margin_of(m)
        # The topic configs come in the background: a cycle that had not got them yet shows no margin.
        return m if settled and own == 0.0 and margin is not None else None

    try:
        proc.wait_ready()
        m = wait_until(ready, 60, what="catch-up series")
        # 3 records wait on raw/0 and the group does not move: it never catches up.
        assert (
            value(m, "ecomind_consumergroup_catch_up_seconds", group=stopped, topic=names.raw, kafka_cluster=CLUSTER)
            == math.inf
        )
        # The sidecar's own group has read everything.
        assert (
            value(
                m, "ecomind_consumergroup_catch_up_seconds", group=names.app_id, topic=names.raw, kafka_cluster=CLUSTER
            )
            == 0.0
        )
        margin = margin_of(m)
        assert margin is not None and 3600 - 120 - 60 <= margin <= 3600 - 120, margin
        assert {dict(k)["group"] for k in series(m, "ecomind_consumergroup_retention_margin_seconds")} == {stopped}
        promtool_accepts(proc.get("/metrics")[1])
    finally:
        proc.stop()
