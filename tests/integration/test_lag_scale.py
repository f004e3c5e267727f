"""Hundreds of groups on a real broker: a few requests per coordinator (OffsetFetch v8+, FindCoordinator v4,
DescribeGroups in chunks) with exact figures, and the same figures from the one-group calls a broker
without those versions gets."""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.protocol.commit import OffsetCommitRequest

from streams.clients import build_clients
from streams.lag.batch import GROUPS_PER_REQUEST
from streams.lag.drain import buffered_drain
from streams.lag.model import LagSnapshot
from streams.lag.probe import LagProbe
from tests.integration.conftest import BROKER_KIND
from tests.integration.kafka_io import Out, produce_async

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BROKER_KIND != "kafka", reason="OffsetFetch v8 and FindCoordinator v4 are Kafka's"),
]

GROUPS = GROUPS_PER_REQUEST + 37  # two requests' worth
RECORDS = 12
PARTITIONS = {"a": 3, "b": 2}


def committed(i: int, topic: str, partition: int) -> int | None:
    """Group i's commit: every group on topic a, one in three on b too; offsets spread over the log."""
    if topic == "b" and i % 3:
        return None
    return (i + 5 * partition) % (RECORDS + 1)


class Setup:
    def __init__(self, bootstrap: str, admin: AIOKafkaAdminClient) -> None:
        self.bootstrap, self.admin = bootstrap, admin
        self.uid = uuid.uuid4().hex[:8]

    def topic(self, short: str) -> str:
        return f"scale-{self.uid}-{short}"

    def group(self, i: int) -> str:
        return f"scale-{self.uid}-g{i:03d}"

    async def prepare(self) -> None:
        await self.admin.create_topics([NewTopic(self.topic(t), n, 1) for t, n in PARTITIONS.items()])
        for t, n in PARTITIONS.items():
            records = [Out(b"x", partition=p) for p in range(n) for _ in range(RECORDS)]
            await produce_async(self.bootstrap, self.topic(t), records)
        limit = asyncio.Semaphore(32)

        async def commit(i: int) -> None:
            topics = [
                (self.topic(t), [(p, o, "") for p in range(n) if (o := committed(i, t, p)) is not None])
                for t, n in PARTITIONS.items()
            ]
            # OffsetCommit with generation -1 and no member: how tools commit for a group without joining it.
            request = OffsetCommitRequest(self.group(i), -1, "", -1, [t for t in topics if t[1]])
            for _ in range(100):
                async with limit:
                    response = await self.admin._client.send(await self.coordinator(self.group(i)), request)
                codes = {code for _, parts in response.topics for _, code in parts}
                if not codes & {14, 15, 16}:  # a fresh broker still loading or moving the offsets topic
                    break
                await asyncio.sleep(0.3)
            assert codes == {0}, response

        await asyncio.gather(*(commit(i) for i in range(GROUPS)))

    async def coordinator(self, group: str) -> int:
        """The group's coordinator, once the offsets topic exists (a fresh broker creates it on demand)."""
        for _ in range(100):
            try:
                return int(await self.admin.find_coordinator(group))
            except GroupCoordinatorNotAvailableError:
                await asyncio.sleep(0.3)
        raise AssertionError(f"no coordinator for {group} in 30 s")

    def probe(self) -> LagProbe:
        admin, consumer = build_clients(self.bootstrap, {})
        pattern = re.compile(f"scale-{self.uid}-.*")
        return LagProbe(admin, consumer, self.group(0), self.topic("a"), pattern, fetch_timeout_ms=10_000)


@pytest.fixture
async def setup(broker) -> AsyncIterator[Setup]:  # type: ignore[no-untyped-def]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    s = Setup(broker.bootstrap, admin)
    await s.prepare()
    yield s
    await admin.close()


def recording(probe: LagProbe, cap: dict[int, int] | None = None) -> list[tuple[int, int, int]]:
    """(API key, version, groups) of every request the probe's admin client sends; `cap` lowers the versions
    the client believes the broker has, as ApiVersions of an older Kafka would."""
    sent: list[tuple[int, int, int]] = []
    client: Any = probe._admin._client  # type: ignore[attr-defined]
    send, get_conn = client.send, client._get_conn

    async def capped_conn(node_id: Any, **kw: Any) -> Any:
        conn = await get_conn(node_id, **kw)
        for key, top in (cap or {}).items():
            if conn is not None and key in conn._versions:
                conn._versions[key] = (conn._versions[key][0], min(top, conn._versions[key][1]))
        return conn

    async def send_and_record(node_id: int, request: Any, **kw: Any) -> Any:
        conn = await capped_conn(node_id)
        version = request.prepare(conn._versions).API_VERSION
        sent.append((request.API_KEY, version, len(getattr(request, "group_ids", [None]))))
        return await send(node_id, request, **kw)

    client.send, client._get_conn = send_and_record, capped_conn
    return sent


def of(sent: list[tuple[int, int, int]], api_key: int) -> list[tuple[int, int]]:
    return sorted(((v, n) for k, v, n in sent if k == api_key), key=lambda x: -x[1])


def figures(snap: LagSnapshot) -> dict[str, dict[tuple[str, int], tuple[int, bool]]]:
    return {
        name: {(p.topic, p.partition): (p.lag_messages, p.committed) for p in g.partitions}
        for name, g in snap.groups.items()
    }


def truth(s: Setup) -> dict[str, dict[tuple[str, int], tuple[int, bool]]]:
    want = {}
    for i in range(GROUPS):
        rows = {}
        for t, n in PARTITIONS.items():
            for p in range(n):
                if (o := committed(i, t, p)) is not None:
                    rows[(s.topic(t), p)] = (RECORDS - o, True)
        want[s.group(i)] = rows
    return want


async def test_hundreds_of_groups_cost_a_few_requests_and_match_the_one_group_calls(setup: Setup) -> None:
    chunks = math.ceil(GROUPS / GROUPS_PER_REQUEST)
    batched = setup.probe()
    await batched.start()
    try:
        # First records are taken from aiokafka's fetch buffer one lookup per partition (drain.py).
        assert buffered_drain(batched._consumer) is not None
        sent = recording(batched)
        first = await batched.measure()
        assert first.errors == []
        assert figures(first) == truth(setup)
        assert of(sent, 10) == [(4, GROUPS_PER_REQUEST), (4, GROUPS - GROUPS_PER_REQUEST)]  # FindCoordinator
        # The one one-group OffsetFetch (aiokafka's v3) asks once whether the broker lists offsets without
        # partitions; then one v8+ request per 200 groups.
        offset_fetches = of(sent, 9)
        assert [n for _, n in offset_fetches] == [GROUPS_PER_REQUEST, GROUPS - GROUPS_PER_REQUEST, 1]
        assert all(v >= 8 for v, n in offset_fetches if n > 1) and offset_fetches[-1][0] < 8
        assert len(of(sent, 15)) == chunks  # DescribeGroups, 200 groups per request
        sent.clear()
        second = await batched.measure()
        assert figures(second) == truth(setup)
        assert of(sent, 10) == [] and len(of(sent, 9)) == chunks  # coordinators cached
    finally:
        await batched.stop()

    old = setup.probe()
    await old.start()
    try:
        sent = recording(old, cap={9: 7, 10: 3})  # a Kafka 2.8 broker's OffsetFetch and FindCoordinator
        snap = await old.measure()
        assert snap.errors == []
        assert figures(snap) == truth(setup)
        assert {v for v, _ in of(sent, 10)} <= {1, 2, 3} and len(of(sent, 10)) == GROUPS
        assert {v for v, _ in of(sent, 9)} <= set(range(8)) and len(of(sent, 9)) == GROUPS + 1
    finally:
        await old.stop()
