"""The lag probe on a real broker, built on real aiokafka clients passed in: groups at known offsets,
exact lag in messages and seconds."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.protocol.admin import DeleteGroupsRequest

from streams.clients import build_clients
from streams.lag.model import GroupLag, LagSnapshot
from streams.lag.probe import LagProbe
from tests.integration.conftest import BROKER_KIND
from tests.integration.kafka_io import Out, commit_group_async, produce_async

pytestmark = pytest.mark.integration


@dataclass
class Cluster:
    bootstrap: str
    admin: AIOKafkaAdminClient
    uid: str

    def name(self, what: str) -> str:
        return f"lag-{self.uid}-{what}"

    async def topics(self, partitions: int, *names: str) -> None:
        await self.admin.create_topics([NewTopic(n, partitions, 1) for n in names])

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        await commit_group_async(self.bootstrap, group, topic, offsets)

    async def delete_group(self, group: str) -> None:
        node = await self.admin.find_coordinator(group)
        response = await self.admin._client.send(node, DeleteGroupsRequest([group]))
        assert [tuple(r) for r in response.results] == [(group, 0)]

    def probe(self, include: str, ignore: str | None = None, watched: str | None = None) -> LagProbe:
        admin, consumer = build_clients(self.bootstrap, {})
        return LagProbe(
            admin,
            consumer,
            watched or self.name("watched"),
            self.name("watched-topic"),
            include=re.compile(include),
            ignore=re.compile(ignore) if ignore else None,
            fetch_timeout_ms=5000,
        )


@pytest.fixture
async def cluster(broker) -> AsyncIterator[Cluster]:  # type: ignore[no-untyped-def]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    yield Cluster(broker.bootstrap, admin, uuid.uuid4().hex[:8])
    await admin.close()


async def measure(probe: LagProbe) -> LagSnapshot:
    await probe.start()
    try:
        return await probe.measure()
    finally:
        await probe.stop()


def table(g: GroupLag) -> dict[tuple[str, int], tuple[int, bool]]:
    return {(p.topic, p.partition): (p.lag_messages, p.committed) for p in g.partitions}


def seconds(g: GroupLag, topic: str, partition: int) -> float | None:
    found = [p for p in g.partitions if (p.topic, p.partition) == (topic, partition)]
    assert len(found) == 1, g
    return found[0].lag_seconds


async def test_groups_at_known_offsets_exact_messages_and_seconds(cluster: Cluster) -> None:
    c = cluster
    topic, other = c.name("orders"), c.name("watched-topic")
    await c.topics(2, topic, other)
    now = int(time.time() * 1000)
    old = now - 120_000
    # Partition 0: offsets 0..9, the first six stamped two minutes ago; partition 1: offsets 0..4, recent.
    records = [Out(b"x", 0, old if i < 6 else now - 1000) for i in range(10)]
    records += [Out(b"y", 1, now - 2000) for _ in range(5)]
    await produce_async(c.bootstrap, topic, records)
    await produce_async(c.bootstrap, other, [Out(b"z", 0, now - 5000) for _ in range(3)])
    await c.commit(c.name("behind"), topic, {0: 4, 1: 5})  # 6 waiting on 0, caught up on 1
    await c.commit(c.name("ahead"), topic, {0: 10, 1: 5})
    await c.commit(c.name("ignored"), topic, {0: 0})
    await c.commit("elsewhere-" + c.uid, topic, {0: 0})  # not matched by the regex

    snap = await measure(c.probe(include=f"lag-{c.uid}-.*", ignore=".*-ignored"))
    assert sorted(snap.groups) == sorted([c.name("behind"), c.name("ahead"), c.name("watched")])
    behind = snap.groups[c.name("behind")]
    assert table(behind) == {(topic, 0): (6, True), (topic, 1): (0, True)}
    age = seconds(behind, topic, 0)
    assert age is not None and 119 <= age <= 150, age  # the record at offset 4, stamped two minutes ago
    assert seconds(behind, topic, 1) == 0.0
    assert (behind.state, behind.members, behind.committed_partitions) == ("Empty", 0, 2)
    assert table(snap.groups[c.name("ahead")]) == {(topic, 0): (0, True), (topic, 1): (0, True)}
    # The watched group never committed: reported explicitly, everything from the log start waiting.
    watched = snap.groups[c.name("watched")]
    assert table(watched) == {(other, 0): (3, False), (other, 1): (0, False)}
    # Kafka says Dead for a group it does not know; Tansu says Empty.
    assert watched.state == ("Empty" if BROKER_KIND == "tansu" else "Dead") and watched.committed_partitions == 0
    age = seconds(watched, other, 0)
    assert age is not None and 4 <= age <= 30, age
    assert snap.errors == []


@pytest.mark.kafka_only  # Tansu's ListGroups does not list a group that has members but no commit
async def test_a_group_with_members_but_no_commit_is_measured_on_its_assignment(cluster: Cluster) -> None:
    c = cluster
    topic = c.name("assigned")
    await c.topics(1, topic)
    await produce_async(c.bootstrap, topic, [Out(b"a", 0) for _ in range(4)])
    member = AIOKafkaConsumer(topic, bootstrap_servers=c.bootstrap, group_id=c.name("silent"), enable_auto_commit=False)
    await member.start()
    try:
        await member.getmany(timeout_ms=2000)  # joins and is assigned the partition; never commits
        snap = await measure(c.probe(include=re.escape(c.name("silent"))))
    finally:
        await member.stop()
    g = snap.groups[c.name("silent")]
    assert (g.state, g.members, g.committed_partitions) == ("Stable", 1, 0)
    assert table(g) == {(topic, 0): (4, False)}


@pytest.mark.kafka_only  # Tansu has no CreatePartitions
async def test_deleted_group_disappears_and_added_partition_appears(cluster: Cluster) -> None:
    c = cluster
    topic = c.name("grows")
    await c.topics(1, topic)
    await produce_async(c.bootstrap, topic, [Out(b"a", 0) for _ in range(5)])
    await c.commit(c.name("gone"), topic, {0: 1})
    await c.commit(c.name("stays"), topic, {0: 2})
    probe = c.probe(include=f"lag-{c.uid}-(gone|stays)")
    await probe.start()
    try:
        first = await probe.measure()
        assert table(first.groups[c.name("gone")]) == {(topic, 0): (4, True)}
        await c.delete_group(c.name("gone"))
        await c.admin.create_partitions({topic: NewPartitions(total_count=2)})
        # The broker's metadata cache learns of the partition after the controller answers: a producer
        # that asks too soon refuses to send to it.
        for _ in range(100):
            (described,) = await c.admin.describe_topics([topic])
            if len(described["partitions"]) == 2:
                break
            await asyncio.sleep(0.1)
        await produce_async(c.bootstrap, topic, [Out(b"b", 1) for _ in range(3)])
        second = await probe.measure()
    finally:
        await probe.stop()
    assert c.name("gone") not in second.groups
    # The new partition has no commit: all of it waits, reported as uncommitted.
    assert table(second.groups[c.name("stays")]) == {(topic, 0): (3, True), (topic, 1): (3, False)}


@pytest.mark.kafka_only  # Tansu has no transactions
async def test_transactional_topic_lag_against_the_last_stable_offset(cluster: Cluster) -> None:
    c = cluster
    topic = c.name("tx")
    await c.topics(1, topic)
    producer = AIOKafkaProducer(bootstrap_servers=c.bootstrap, transactional_id=c.name("txp"), acks="all")
    await producer.start()
    now = int(time.time() * 1000)
    try:
        for values, commit, ts in (
            ([b"1", b"2", b"3"], True, now - 90_000),
            ([b"x", b"y"], False, now),
            ([b"4", b"5"], True, now - 30_000),
        ):
            async with producer.transaction() if commit else _aborting(producer):
                for v in values:
                    await producer.send_and_wait(topic, v, partition=0, timestamp_ms=ts)
        # Offsets: 0-2 data, 3 commit marker, 4-5 aborted, 6 abort marker, 7-8 data, 9 commit marker.
        # Then an open transaction: 10-11 written, not committed, so the LSO stays at 10.
        await producer.begin_transaction()
        for v in (b"o1", b"o2"):
            await producer.send_and_wait(topic, v, partition=0)
        await c.commit(c.name("at-marker"), topic, {0: 9})  # read 8, committed 9: the "lag stuck at 1"
        await c.commit(c.name("after-first"), topic, {0: 3})  # next readable record is 7
        await c.commit(c.name("start"), topic, {0: 0})
        snap = await measure(c.probe(include=f"lag-{c.uid}-(at-marker|after-first|start)"))
    finally:
        await producer.abort_transaction()
        await producer.stop()
    assert table(snap.groups[c.name("at-marker")]) == {(topic, 0): (0, True)}
    assert seconds(snap.groups[c.name("at-marker")], topic, 0) == 0.0
    # From 3 the first committed record is 7: offsets 3-6 are markers and aborted records, not waiting.
    # 7, 8 and the commit marker 9 lie below the LSO (10): lag counts offsets from the first record.
    assert table(snap.groups[c.name("after-first")]) == {(topic, 0): (3, True)}
    age = seconds(snap.groups[c.name("after-first")], topic, 0)
    assert age is not None and 29 <= age <= 60, age
    assert table(snap.groups[c.name("start")]) == {(topic, 0): (10, True)}
    age = seconds(snap.groups[c.name("start")], topic, 0)
    assert age is not None and 89 <= age <= 120, age


class _aborting:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> None:
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.abort_transaction()
