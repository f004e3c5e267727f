"""A state write Redis refuses (a stored value that is not a number, a key of another type, a script
error) is never sent again at once: counted by reason, its partition paused and reported stalled, read
again from the stored offset after a back-off, and counted exactly once when Redis accepts it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from redis.exceptions import ClusterDownError, ConnectionError, ReadOnlyError, RedisError

from agents.stalls import STATE_REFUSED, Stalls
from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tables.delta import Delta
from tables.writes import (
    ClusterStateHidden,
    InvalidStoredValue,
    OffsetMove,
    PartialWrite,
    ScriptFailed,
    SlotMoving,
    WriteRefused,
    WrongKeyType,
)
from tests.unit.agents.fakes import PositionsConsumer, raw_record

TP = TopicPartition("events.raw", 0)
EVENTS = 10


class _Consumer(PositionsConsumer):
    """One partition's log of valid raw events, served from the position unless paused."""

    def __init__(self) -> None:
        super().__init__({TP})
        self.log = [raw_record(TP, i) for i in range(EVENTS)]

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        await asyncio.sleep(0.002)
        position = self.positions.get(TP)
        if TP in self.paused or position is None or position >= len(self.log):
            return {}
        self.positions[TP] = len(self.log)
        return {TP: self.log[position:]}


class _Store:
    """Refuses the first writes with the given errors, then applies: what it counted is what Redis holds."""

    def __init__(self, refusals: list[WriteRefused] | list[RedisError]) -> None:
        self.refusals = refusals
        self.offset: int | None = None
        self.processed = 0
        self.calls = 0
        self.refused = asyncio.Event()

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        return {p: (self.offset, "id-1" if self.offset is not None else None) for p in partitions}

    async def load_offsets(self, partitions: Any) -> dict[tuple[str, int], int | None]:
        return {p: self.offset for p in partitions}

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        self.calls += 1
        if self.refusals:
            self.refused.set()
            raise self.refusals.pop(0)
        assert [(m.expected, m.next_offset) for m in moves] == [(self.offset, EVENTS)]
        self.offset = moves[0].next_offset
        self.processed += sum(delta.processed.values())


@pytest.mark.parametrize(
    "refusal",
    [
        InvalidStoredValue("{s}:v3:last_ts", "events.raw"),
        WrongKeyType("{s}:v3:processed"),
        ScriptFailed("{s}:v3:offsets", detail="user_script:1: attempt to compare nil with number"),
        PartialWrite("{s}:v3:offsets:writing", detail="the batch that stopped moved o:events.raw:0 5>9"),
        ClusterStateHidden("{s}:v3:offsets", detail="NOPERM this user has no permissions to run 'cluster|nodes'"),
    ],
    ids=lambda e: e.reason,
)
async def test_a_refused_write_pauses_its_partition_and_is_written_once_after_the_back_off(
    refusal: WriteRefused,
) -> None:
    consumer, store = _Consumer(), _Store([refusal, refusal])
    status = Status(replica_id="r")
    agent = TapAgent(Settings(), store, status, consumer)  # type: ignore[arg-type]
    agent.stalls = Stalls(1, 0.2, 0.4)  # back-offs of 0.2 s then 0.4 s
    agent._last_rewind_check = 1e18  # no rewind checks: they are not what this is about
    await agent.on_assigned({TP})
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(store.refused.wait(), 5)
        await asyncio.sleep(0.05)
        assert store.calls == 1, "a refused write must not be sent again at once"
        assert consumer.paused == {TP}
        assert status.writes_refused[refusal.reason] == 1
        assert {r: n for r, n in status.writes_refused.items() if r != refusal.reason} == {
            r: 0
            for r in ("invalid_value", "wrong_type", "script_error", "partial_write", "cluster_nodes_refused")
            if r != refusal.reason
        }
        stall = status.stalled[(TP.topic, TP.partition)]
        assert stall.reason == STATE_REFUSED and stall.offset is None
        assert refusal.reason in stall.detail and refusal.key in stall.detail
        assert agent.expected[TP] is None, "put back to the stored offset, not left past the refused batch"
        for _ in range(300):
            await asyncio.sleep(0.01)
            if store.processed:
                break
        await asyncio.sleep(0.1)
    finally:
        run.cancel()
    assert store.calls == 3  # once, then once after each back-off
    assert status.writes_refused[refusal.reason] == 2
    assert (store.offset, store.processed) == (EVENTS, EVENTS), "counted exactly once"
    assert consumer.paused == set() and status.stalled == {}
    assert status.redis_errors == 0


@pytest.mark.parametrize(
    "fault",
    [
        ReadOnlyError("You can't write against a read only replica."),  # a demoted primary
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        SlotMoving("TRYAGAIN slot 3828 of {s}:v3:offsets is moving between primaries"),
        ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    ],
    ids=["readonly", "clusterdown", "slot-moving", "connection"],
)
async def test_a_failover_or_a_moving_slot_is_retried_not_refused(fault: RedisError) -> None:
    consumer, store = _Consumer(), _Store([fault, fault])
    status = Status(replica_id="r")
    agent = TapAgent(Settings(), store, status, consumer)  # type: ignore[arg-type]
    agent._last_rewind_check = 1e18
    await agent.on_assigned({TP})
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(store.refused.wait(), 5)
        await asyncio.sleep(0.05)
        assert consumer.paused == set() and status.stalled == {}, "a topology fault pauses nothing"
        for _ in range(300):  # back-offs of 0.2 s then 0.4 s
            await asyncio.sleep(0.01)
            if store.processed:
                break
    finally:
        run.cancel()
    assert store.calls == 3 and status.redis_errors == 2
    assert sum(status.writes_refused.values()) == 0
    assert (store.offset, store.processed) == (EVENTS, EVENTS), "the same batch, written once"
