"""The tap's epochs: records fetched before a seek are never written under offsets set by that seek.

Each test builds one race as aiokafka can deliver it: a fetch returns records that were valid when
collected (aiokafka drops results whose position changed before they were collected), and a seek lands
before the batch is written: a rebalance callback holding the lock (callbacks run in aiokafka's
coordinator task, beside the tap's loop), or the write in flight refused and its partition reloaded.
Either way the batch is dropped and read again, so every event counts once. The store checks the stored
offset as the batch script does; `processed` is what Redis would count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tables.delta import Delta
from tables.writes import OffsetMove
from tests.unit.agents.fakes import OffsetsStore, PositionsConsumer, raw_record

TP = TopicPartition("events.raw", 0)
EVENTS, BATCH = 12, 5


class _Consumer(PositionsConsumer):
    """One partition of valid raw events, BATCH at a time from the position; `after_fetch[n]` runs once the
    n-th fetch (from 1) has collected its records, before they are returned."""

    def __init__(self) -> None:
        super().__init__({TP})
        self.log = [raw_record(TP, i) for i in range(EVENTS)]
        self.fetches = 0
        self.after_fetch: dict[int, Callable[[], Awaitable[None]]] = {}

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        await asyncio.sleep(0.001)
        position = self.positions.get(TP)
        if position is None or position >= len(self.log):
            return {}
        records = self.log[position : position + BATCH]
        self.positions[TP] = records[-1].offset + 1
        self.fetches += 1
        hook = self.after_fetch.get(self.fetches)
        if hook is not None:
            await hook()
        return {TP: records}


class _Store(OffsetsStore):
    """TP's stored offset and what it counted; `hold_loads` / `hold_writes` stop the next load or write until
    released, `before_write` runs once just before the next write."""

    def __init__(self) -> None:
        super().__init__({TP: 0})
        self.hold_loads: asyncio.Event | None = None
        self.hold_writes: asyncio.Event | None = None
        self.before_write: Callable[[], None] | None = None

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        if self.hold_writes is not None:
            gate, self.hold_writes = self.hold_writes, None
            await gate.wait()
        if self.before_write is not None:
            act, self.before_write = self.before_write, None
            act()
        await super().apply(delta, moves)

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        if self.hold_loads is not None:
            gate, self.hold_loads = self.hold_loads, None
            await gate.wait()
        return await super().load_stored(partitions)


def _agent(consumer: _Consumer, store: _Store) -> TapAgent:
    agent = TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    # Neither periodic check runs: each would drain the write in flight, which the tests hold on purpose.
    agent._last_rewind_check = agent._last_id_check = 1e18
    return agent


async def _run_until_all_read(agent: TapAgent, store: _Store) -> None:
    run = asyncio.create_task(agent.run())
    try:
        for _ in range(500):
            await asyncio.sleep(0.002)
            if store.stored[TP] == EVENTS and agent._inflight is None:
                break
        await asyncio.sleep(0.02)  # a stray write after the last would show in `writes`
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_batch_fetched_before_a_callback_seeks_is_read_again_not_claimed_from_the_new_offset() -> None:
    """Redis came back from an older snapshot (stored 2, counted 2) while the batch 5-9 was fetched; the
    assignment callback, holding the lock, positions the partition at 2. Claimed from 2, the batch would
    skip 2-4 and the write would pass the stored-offset check: the epoch check is what re-reads it."""
    consumer, store = _Consumer(), _Store()
    agent = _agent(consumer, store)
    await agent.on_assigned({TP})
    callback: list[asyncio.Task[None]] = []
    released = asyncio.Event()

    async def rebalance_meanwhile() -> None:
        store.stored[TP], store.processed = 2, 2
        store.hold_loads = released
        callback.append(asyncio.create_task(agent.on_assigned({TP})))
        await asyncio.sleep(0)  # the callback takes the lock and waits on Redis
        assert agent.lock.locked()
        asyncio.get_running_loop().call_later(0.01, released.set)

    consumer.after_fetch[2] = rebalance_meanwhile
    await _run_until_all_read(agent, store)
    assert callback and callback[0].done()
    assert (store.stored[TP], store.processed) == (EVENTS, EVENTS), store.writes
    assert store.writes == [(0, 5), (2, 7), (7, 12)]
    assert agent.status.batch_conflicts == 0
    # Dropped before its fold: the check after the drain would catch it too, once folded for nothing.
    assert agent.status.records_folded == 5 + 5 + 5


async def test_a_batch_fetched_while_the_write_before_it_is_refused_is_read_again_not_sent() -> None:
    """Another replica wrote the batch 0-4 first (stored 5): this replica's write of it is refused, and the
    refusal reloads the partition at 5 while the next batch (5-9) is already folded. Sent anyway, that
    batch would pass (it does start at 5) but the reload's seek would serve 5-9 once more, claimed from 10:
    counted twice. The check after the drain drops it and reads 5-9 once."""
    consumer, store = _Consumer(), _Store()
    agent = _agent(consumer, store)
    await agent.on_assigned({TP})
    released = asyncio.Event()
    store.hold_writes = released

    def zombie_wrote_it() -> None:
        store.stored[TP], store.processed = 5, 5

    store.before_write = zombie_wrote_it

    async def release_the_write() -> None:
        released.set()  # the batch 5-9 is collected: the first write now meets the other replica's

    consumer.after_fetch[2] = release_the_write
    await _run_until_all_read(agent, store)
    assert agent.status.batch_conflicts == 1
    assert (store.stored[TP], store.processed) == (EVENTS, EVENTS), store.writes
    assert store.writes == [(5, 10), (10, 12)]
    assert agent.status.records_folded == 5 + 5 + 5 + 2  # 5-9 folded once for nothing: found stale after it
