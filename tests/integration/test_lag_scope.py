"""Topic filters, stale offsets and per-client lag on a real broker (streams/lag/scope.py, members.py):
real groups, real members, exact figures."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from streams.clients import build_clients
from streams.exposition import render
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import LagSnapshot
from streams.lag.probe import LagProbe
from streams.lag.scope import LagScope, StaleMemory
from streams.lag.stale_store import StaleStore
from streams.local.java_clients import ConsoleConsumer
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, parse, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import create_topics
from tests.integration.conftest import BROKER_KIND, Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import BrokerNamespace, Out, commit_group_async, produce_async
from tests.integration.test_lag_kip848 import until
from tests.integration.test_lag_probe import measure, table

pytestmark = pytest.mark.integration


class Env(BrokerNamespace):
    prefix = "scope"

    async def topic(self, name: str, partitions: int, per_partition: int) -> None:
        await self.admin.create_topics([NewTopic(name, partitions, 1)])
        records = [Out(f"{p}-{i}".encode(), p) for p in range(partitions) for i in range(per_partition)]
        await produce_async(self.bootstrap, name, records)

    def probe(self, scope: LagScope, watched: str | None = None, stale_memory: StaleMemory | None = None) -> LagProbe:
        admin, consumer = build_clients(self.bootstrap, {})
        include = re.compile(self.name(".*"))
        watched = watched or self.name("watched")
        return LagProbe(
            admin,
            consumer,
            watched,
            self.name("raw"),
            include=include,
            fetch_timeout_ms=5000,
            scope=scope,
            stale_memory=stale_memory,
        )

    def member(self, group: str, client_id: str, *topics: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )


@pytest.fixture
async def env(broker, workdir: Path) -> AsyncIterator[Env]:  # type: ignore[no-untyped-def]
    async with Env.open(broker.bootstrap, workdir) as e:
        yield e


class Requests:
    """What the probe asked the broker about: the topics of its Metadata requests and its partitions."""

    def __init__(self, probe: LagProbe) -> None:
        self.metadata: set[str] = set()
        self.assigned: set[TopicPartition] = set()
        admin: Any = probe._admin
        consumer: Any = probe._consumer
        describe, assign = admin.describe_topics, consumer.assign

        async def describe_topics(topics: list[str] | None = None) -> Any:
            self.metadata.update(topics or ["<all>"])
            return await describe(topics)

        def spy_assign(partitions: list[TopicPartition]) -> None:
            self.assigned.update(partitions)
            assign(partitions)

        admin.describe_topics, consumer.assign = describe_topics, spy_assign


async def test_topic_filters_leave_topics_out_of_every_request_but_the_watched_groups(env: Env) -> None:
    e = env
    a, b, c, raw = e.name("a"), e.name("b"), e.name("c"), e.name("raw")
    for t in (a, b, c, raw):
        await e.topic(t, 1, 5)
    group, watched = e.name("sink"), e.name("watched")
    for t, offset in ((a, 1), (b, 2), (c, 3)):
        await commit_group_async(e.bootstrap, group, t, {0: offset})
    await commit_group_async(e.bootstrap, watched, c, {0: 4})
    scope = LagScope(re.compile(e.name("(a|b)")), re.compile(".*-b"))
    probe = e.probe(scope)
    spy = Requests(probe)
    snap = await measure(probe)
    assert snap.errors == []
    assert table(snap.groups[group]) == {(a, 0): (4, True)}  # b ignored, c not included
    # The watched group is measured whole: the design document's series are computed from it.
    assert table(snap.groups[watched]) == {(c, 0): (1, True), (raw, 0): (5, False)}
    # b is asked about by no one (c only for the watched group, which has commits there). Tansu answers
    # OffsetFetch only for partitions named in it, so there the probe lists every topic's partitions to
    # name them: the filter then shows in what is read (the assignment below), not in the listing.
    if BROKER_KIND != "tansu":
        assert b not in spy.metadata and "<all>" not in spy.metadata
    assert {tp.topic for tp in spy.assigned} == {a, c, raw}


def probe_scrape(snap: LagSnapshot, export: LagExport) -> dict[frozenset[tuple[str, str]], float]:
    return series(parse(render([LagCollector(snap, "none", export)]).decode()), "ecomind_consumergroup_lag")


@pytest.mark.kafka_only  # Tansu lists a group only once it has committed, and rebalances differently
async def test_a_group_that_leaves_a_topic_has_stale_offsets_dropped_flagged_or_kept(
    env: Env, redis_server: LocalRedis
) -> None:
    e = env
    t1, t2 = e.name("t1"), e.name("t2")
    await e.topic(t1, 1, 6)
    await e.topic(t2, 2, 4)
    group = e.name("resubscribed")
    consumer = e.member(group, "resubscriber", t1, t2)
    await consumer.start()
    probe = e.probe(LagScope())
    await probe.start()
    try:
        await until(lambda: len(consumer.assignment()) == 3, 30, "t1 and t2 assigned")
        tp1, tp20, tp21 = TopicPartition(t1, 0), TopicPartition(t2, 0), TopicPartition(t2, 1)
        await consumer.commit({tp1: 2, tp20: 1, tp21: 3})
        consumer.subscribe([t1])
        await until(lambda: consumer.assignment() == {tp1}, 30, "the resubscription to t1 only")
        await until(functools.partial(_stable, probe, group), 30, "the group Stable again")

        dropped = await probe.measure()
        g = dropped.groups[group]
        assert (g.state, g.members) == ("Stable", 1)
        assert table(g) == {(t1, 0): (4, True)}
        assert (g.stale_topics, g.stale_partitions) == (frozenset({t2}), 2)

        probe.scope = LagScope(stale="flag")
        flagged = await probe.measure()
        everything = {(t1, 0): (4, True), (t2, 0): (3, True), (t2, 1): (1, True)}
        assert table(flagged.groups[group]) == everything
        exported = probe_scrape(flagged, LagExport(stale="flag"))
        mine = {(dict(k)["topic"], dict(k)["partition"], dict(k)["stale"]): v for k, v in exported.items()}
        assert {k: v for k, v in mine.items() if k[0] in (t1, t2)} == {
            (t1, "0", "false"): 4.0,
            (t2, "0", "true"): 3.0,
            (t2, "1", "true"): 1.0,
        }

        probe.scope = LagScope(stale="keep")
        kept = await probe.measure()
        assert table(kept.groups[group]) == everything and kept.groups[group].stale_partitions == 2

        # Its last member gone, the group is Empty: an Empty spell (a restart) says nothing new about
        # what it reads, so t2 stays stale (and dropped) rather than coming back until the next Stable.
        await consumer.stop()
        probe.scope = LagScope()
        await until(functools.partial(_state, probe, group, "Empty"), 30, "the group Empty")
        empty = await probe.measure()
        assert table(empty.groups[group]) == {(t1, 0): (4, True)}
        assert (empty.groups[group].stale_topics, empty.groups[group].stale_partitions) == (frozenset({t2}), 2)

        # The exporter lease moves: the next exporter's probe starts with no memory. Without what the last
        # one wrote to Redis it measures t2 again; with it, t2 stays dropped (streams/lag/stale_store.py).
        forgetful = e.probe(LagScope())
        await forgetful.start()
        try:
            assert table((await forgetful.measure()).groups[group]) == everything
        finally:
            await forgetful.stop()
        app = e.name("app")
        memory = probe._stale_of
        await stale_store(redis_server, app).after("default", memory)
        assert memory[group] == frozenset({t2})
        fresh_memory: StaleMemory = {}
        await stale_store(redis_server, app).before("default", fresh_memory)
        assert fresh_memory == {group: frozenset({t2})}
        successor = e.probe(LagScope(), stale_memory=fresh_memory)
        await successor.start()
        try:
            inherited = (await successor.measure()).groups[group]
            assert table(inherited) == {(t1, 0): (4, True)} and inherited.stale_topics == frozenset({t2})
        finally:
            await successor.stop()
    finally:
        await consumer.stop()
        await probe.stop()


def stale_store(redis: LocalRedis, app_id: str) -> StaleStore:
    return StaleStore(lambda: aioredis.from_url(redis.url, decode_responses=True), app_id, gap_s=60.0)


async def _state(probe: LagProbe, group: str, state: str) -> bool:
    snap = await probe.measure()
    return group in snap.groups and snap.groups[group].state == state


async def _stable(probe: LagProbe, group: str) -> bool:
    return await _state(probe, group, "Stable")


def owned_lag(c: AIOKafkaConsumer, ends: int) -> int:
    return sum(ends - (tp.partition + 1) for tp in c.assignment())


@pytest.mark.kafka_only  # Tansu lists a group only once it has committed, and rebalances differently
async def test_per_client_lag_of_two_members(env: Env) -> None:
    e = env
    topic = e.name("shared")
    await e.topic(topic, 4, 10)
    group = e.name("pair")
    first, second = e.member(group, "svc-a", topic), e.member(group, "svc-b", topic)
    await first.start()
    await second.start()
    probe = e.probe(LagScope(members=True))
    await probe.start()
    try:
        await until(lambda: len(first.assignment()) == 2 and len(second.assignment()) == 2, 60, "two partitions each")
        # Partition p committed at p + 1: 9 - p waiting on it, so each member's share is distinct.
        for c in (first, second):
            await c.commit({tp: tp.partition + 1 for tp in c.assignment()})
        await until(functools.partial(_stable, probe, group), 30, "the group Stable")
        snap = await probe.measure()
        # Checked against the assignment at the end, in case the members were reassigned meanwhile.
        want = {("svc-a", "/127.0.0.1", 2, owned_lag(first, 10)), ("svc-b", "/127.0.0.1", 2, owned_lag(second, 10))}
    finally:
        await first.stop()
        await second.stop()
        await probe.stop()
    g = snap.groups[group]
    assert (g.state, g.members) == ("Stable", 2)
    assert {(r.client_id, r.host, r.partitions, r.lag_messages) for r in g.member_lag} == want
    assert owned_lag(first, 10) + owned_lag(second, 10) == 9 + 8 + 7 + 6
    for row in g.member_lag:
        assert row.lag_seconds is not None and 0 < row.lag_seconds < 120  # produced seconds ago
    m = parse(render([LagCollector(snap, "none", LagExport(members=True))]).decode())
    for row in g.member_lag:
        labels = {"group": group, "client_id": row.client_id, "host": "/127.0.0.1"}
        assert value(m, "ecomind_consumergroup_member_lag", **labels) == row.lag_messages
        assert value(m, "ecomind_consumergroup_member_partitions", **labels) == 2.0
    # Capped at one client per group: the more lagging one keeps its labels, the other is __other__.
    m = parse(render([LagCollector(snap, "none", LagExport(members=True, members_per_group=1))]).decode())
    mine = {dict(k)["client_id"]: v for k, v in series(m, "ecomind_consumergroup_member_lag").items()}
    top = max(g.member_lag, key=lambda r: r.lag_messages)
    assert mine == {top.client_id: top.lag_messages, "__other__": 30 - top.lag_messages}


@pytest.mark.kafka_only  # KIP-848 consumer groups, with Kafka's own Java console consumer
async def test_a_consumer_protocol_group_that_leaves_a_topic(env: Env) -> None:
    """Commits on t1 and t2, then a `group.protocol=consumer` member subscribed to t1 only: t2 is stale,
    read from ConsumerGroupDescribe's assignments, and the member's lag comes from them too."""
    e = env
    t1, t2 = e.name("k1"), e.name("k2")
    await e.topic(t1, 1, 5)
    await e.topic(t2, 1, 5)
    group = e.name("modern")
    await commit_group_async(e.bootstrap, group, t1, {0: 5})
    await commit_group_async(e.bootstrap, group, t2, {0: 2})
    member = ConsoleConsumer(e.workdir, e.bootstrap, t1, group, protocol="consumer", commit=False)
    probe = e.probe(LagScope(members=True))
    await probe.start()
    started = time.monotonic()
    try:
        member.start()
        await until(functools.partial(_stable, probe, group), 90, "the consumer-protocol member Stable")
        snap = await probe.measure()
        listed = probe._listed[group]
    finally:
        member.stop()
        await probe.stop()
    print(f"member Stable after {time.monotonic() - started:.1f}s")
    g = snap.groups[group]
    assert listed.type == "consumer"  # described by ConsumerGroupDescribe, not DescribeGroups
    assert (g.state, g.members) == ("Stable", 1)
    assert table(g) == {(t1, 0): (0, True)}
    assert (g.stale_topics, g.stale_partitions) == (frozenset({t2}), 1)
    (row,) = g.member_lag
    print("member", row)
    assert (row.host, row.partitions, row.lag_messages, row.lag_seconds) == ("/127.0.0.1", 1, 0, 0.0)
    assert row.client_id  # the Java client's own, e.g. console-consumer


def _rows(m: Samples, group: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for labels, v in series(m, "ecomind_consumergroup_lag").items():
        d = dict(labels)
        if d["group"] == group:
            out[(d["topic"], d["partition"], d["stale"])] = v
    return out


@pytest.mark.kafka_only  # Tansu's DescribeGroups gives no member assignments
async def test_through_the_sidecar_topics_ignored_stale_flagged_clients_named(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    old = f"old.{names.app_id}"
    await create_topics(broker.bootstrap, [names.raw, names.enriched, old], 1, 1, None)
    await produce_async(broker.bootstrap, names.raw, [Out(b"{}", 0) for _ in range(4)])
    await produce_async(broker.bootstrap, names.enriched, [Out(b"{}", 0)])
    await produce_async(broker.bootstrap, old, [Out(b"{}", 0) for _ in range(3)])
    moved = f"ext-{names.app_id}-moved"
    consumer = AIOKafkaConsumer(
        names.raw,
        old,
        bootstrap_servers=broker.bootstrap,
        group_id=moved,
        client_id="mover",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=f"{names.app_id}|ext-{names.app_id}-.*",
        STREAMS_LAG_TOPICS_IGNORE=re.escape(names.enriched),
        STREAMS_LAG_STALE="flag",
        STREAMS_LAG_MEMBERS="true",
    )
    proc = SidecarProc(workdir / names.app_id, env)
    await consumer.start()
    try:
        await until(lambda: len(consumer.assignment()) == 2, 30, "raw and old assigned")
        await consumer.commit({TopicPartition(names.raw, 0): 1, TopicPartition(old, 0): 0})
        consumer.subscribe([names.raw])
        await until(lambda: consumer.assignment() == {TopicPartition(names.raw, 0)}, 30, "raw only")
        proc.start()
        await asyncio.to_thread(proc.wait_ready)
        own = {(names.raw, "0", "false"): 0.0}  # the sidecar's own group: enriched ignored, raw folded

        def settled() -> Samples | None:
            m = proc.scrape()
            return m if _rows(m, moved) and _rows(m, names.app_id) == own else None

        m = await asyncio.to_thread(wait_until, settled, 60, 0.2, "lag series of both groups")
        body = proc.get("/metrics")[1]
    finally:
        await consumer.stop()
        proc.stop()
    assert _rows(m, moved) == {(names.raw, "0", "false"): 3.0, (old, "0", "true"): 3.0}
    assert value(m, "ecomind_consumergroup_stale_partitions", group=moved, kafka_cluster="default") == 1.0
    assert value(m, "ecomind_consumergroup_stale_partitions", group=names.app_id, kafka_cluster="default") == 0.0
    client = {"group": moved, "client_id": "mover", "host": "/127.0.0.1", "kafka_cluster": "default"}
    assert value(m, "ecomind_consumergroup_member_lag", **client) == 3.0  # raw only: old is no one's
    assert value(m, "ecomind_consumergroup_member_partitions", **client) == 1.0
    own_clients = {
        k: v for k, v in series(m, "ecomind_consumergroup_member_partitions").items() if ("group", names.app_id) in k
    }
    assert sum(own_clients.values()) == 1.0  # raw/0; enriched/0 is owned but not measured
    # The watched group keeps the design document's series, on the raw topic.
    assert value(m, "ecomind_worker_kafka_lag", topic=names.raw, partition="0") == 4.0
    promtool_accepts(body)
