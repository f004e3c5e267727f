"""The lag probe on consumer groups of both protocols: Kafka's own Java console consumer with
`group.protocol=consumer` (KIP-848) beside a classic one, compared with what the broker's own
`kafka-consumer-groups --describe` says about the same groups at the same moment."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from streams.clients import build_clients
from streams.lag.probe import LagProbe
from streams.local.java_clients import ConsoleConsumer, GroupView, describe_groups, parse_groups
from tests.integration.kafka_io import BrokerNamespace, Out, produce_async
from tests.integration.test_lag_probe import measure, table

pytestmark = pytest.mark.integration

# A frozen consumer-protocol member stays in its group until the broker's session timeout
# (group.consumer.session.timeout.ms, 45 s by default): everything compared must happen before.
FROZEN_MEMBER_S = 45


class Groups(BrokerNamespace):
    prefix = "kip848"

    async def committed(self, group: str) -> int:
        try:
            offsets = await self.admin.list_consumer_group_offsets(group)
        except KafkaError:  # a fresh broker's group coordinator is not there yet
            return -1
        return sum(m.offset for m in offsets.values())

    def probe(self, include: str | None, watched: str, topic: str) -> LagProbe:
        """A probe watching `watched` on `topic`: the topic it always measures for that group."""
        admin, consumer = build_clients(self.bootstrap, {})
        pattern = re.compile(include) if include else None
        return LagProbe(admin, consumer, watched, topic, include=pattern, fetch_timeout_ms=5000)


@pytest.fixture
async def groups(broker, workdir: Path) -> AsyncIterator[Groups]:  # type: ignore[no-untyped-def]
    async with Groups.open(broker.bootstrap, workdir) as g:
        yield g


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await _value(check()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.2)


def kafka_says(view: GroupView) -> dict[tuple[str, int], tuple[int, bool]]:
    """kafka-consumer-groups' LAG per partition, in the probe's terms. Without a commit it prints "-"
    for the lag: the probe counts from the log start, which is 0 here, so the log end."""
    return {
        (r.topic, r.partition): (r.lag, True) if r.lag is not None else (r.log_end or 0, False) for r in view.offsets
    }


@pytest.mark.kafka_only  # Tansu has no KIP-848 consumer groups; Kafka's Java tools run against Apache Kafka
async def test_consumer_protocol_groups_match_kafka_consumer_groups(groups: Groups) -> None:
    g = groups
    topic = g.name("orders")
    await g.admin.create_topics([NewTopic(topic, 2, 1)])
    await produce_async(g.bootstrap, topic, [Out(f"rec-{i}".encode(), i % 2) for i in range(10)])
    modern = ConsoleConsumer(g.workdir, g.bootstrap, topic, g.name("modern"), protocol="consumer")
    classic = ConsoleConsumer(g.workdir, g.bootstrap, topic, g.name("classic"), protocol="classic")
    # A consumer-protocol member that never commits: measured on its assignment, all of it waiting.
    silent = ConsoleConsumer(g.workdir, g.bootstrap, topic, g.name("silent"), protocol="consumer", commit=False)
    consumers = [modern, classic, silent]
    try:
        for c in consumers:
            c.start()
        for c in (modern, classic):
            await until(functools.partial(_committed_all, g, c.group, 10), 90, f"{c.group} to commit 10")
        await until(lambda: silent.printed("rec-") >= 10, 90, "the silent consumer to read 10")
        # Half the topic read and committed; both stop where they are and stay members.
        modern.freeze()
        classic.freeze()
        frozen_at = time.monotonic()
        await produce_async(g.bootstrap, topic, [Out(f"rec-{i}".encode(), i % 2) for i in range(10, 20)])

        names = [c.group for c in consumers]
        listed = await measure(g.probe(g.name(".*"), g.name("modern"), topic))
        alone = await measure(g.probe(None, g.name("modern"), topic))  # no listing: type unknown
        raw = await asyncio.to_thread(describe_groups, g.bootstrap, *names)
        elapsed = time.monotonic() - frozen_at
    finally:
        for c in consumers:
            c.stop()
    print(f"frozen for {elapsed:.1f}s while measured")
    for mode, text in raw.items():  # shown with -s, and on failure
        print(f"--- kafka-consumer-groups --describe ({mode})\n{text}")
    assert elapsed < FROZEN_MEMBER_S - 5, f"took {elapsed:.0f}s: the frozen member may have timed out meanwhile"
    view = parse_groups(raw, *names)
    assert listed.errors == [] and alone.errors == []
    for name in names:
        got, kafka = listed.groups[name], view[name]
        print(name, got.state, got.members, table(got))
        assert (got.state, got.members) == (kafka.state, kafka.members)  # --state and --members
        assert kafka.members == kafka.state_members
        assert table(got) == kafka_says(kafka)
    # What the numbers are, not only that both tools agree on them:
    for name in (g.name("modern"), g.name("classic")):
        assert (listed.groups[name].state, listed.groups[name].members) == ("Stable", 1)
        assert table(listed.groups[name]) == {(topic, 0): (5, True), (topic, 1): (5, True)}
    silent_lag = listed.groups[g.name("silent")]
    assert (silent_lag.state, silent_lag.members) == ("Stable", 1)
    assert table(silent_lag) == {(topic, 0): (10, False), (topic, 1): (10, False)}
    # The watched group alone, with no listing to give its type, reads the same.
    watched = alone.groups[g.name("modern")]
    assert (watched.state, watched.members, table(watched)) == (
        "Stable",
        1,
        {(topic, 0): (5, True), (topic, 1): (5, True)},
    )


async def _value(answer: bool | Awaitable[bool]) -> bool:
    return await answer if inspect.isawaitable(answer) else bool(answer)


async def _committed_all(g: Groups, group: str, total: int) -> bool:
    return await g.committed(group) == total


async def test_a_classic_group_is_described_as_before(groups: Groups) -> None:
    """On Kafka through the typed listing; on Tansu, which advertises ListGroups v5 and API 69 but lists
    every group as classic, through the same path: the classic call's state and members stand."""
    g = groups
    topic = g.name("classic-only")
    await g.admin.create_topics([NewTopic(topic, 1, 1)])
    await produce_async(g.bootstrap, topic, [Out(b"a", 0) for _ in range(6)])
    member = AIOKafkaConsumer(
        topic,
        bootstrap_servers=g.bootstrap,
        group_id=g.name("aiokafka"),
        enable_auto_commit=False,
        session_timeout_ms=6000,
    )
    await member.start()
    try:
        await until(lambda: bool(member.assignment()), 30, "the assignment")
        await member.getmany(timeout_ms=2000)
        await member.commit({tp: 2 for tp in member.assignment()})
        snap = await measure(g.probe(re.escape(g.name("aiokafka")), g.name("aiokafka"), topic))
    finally:
        await member.stop()
    got = snap.groups[g.name("aiokafka")]
    assert snap.errors == []
    assert (got.state, got.members) == ("Stable", 1)
    assert table(got) == {(topic, 0): (4, True)}
