"""A batch fetched inside a reload: `_reload` awaits `seek_to_beginning` for a partition never written
(aiokafka asks the leader for the log start) before it seeks the next partition. A getmany begun in that
wait can return records of the partition not yet sought, from the position aiokafka gave it itself (the
group's committed offset, set while the assignment callback runs). Claimed from the stored offset, they
would count the gap twice (committed below stored) or skip it (committed above): the epoch moves again
once every seek is done, so that batch is dropped and read again from the stored offset.

A = events.raw/0: never written (stored None), its reset to the log start takes a while.
B = events.raw/1: stored 5 (another replica counted 0-4), committed offset in Kafka C.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tests.unit.agents.fakes import OffsetsStore, PositionsConsumer, raw_record

A = TopicPartition("events.raw", 0)
B = TopicPartition("events.raw", 1)
EVENTS, BATCH, STORED = 12, 5, 5


class _Consumer(PositionsConsumer):
    def __init__(self, committed: int) -> None:
        super().__init__({A, B})
        self.log = [raw_record(B, i) for i in range(EVENTS)]
        # aiokafka positioned B from the group's committed offset when the assignment arrived.
        self.positions[B] = committed
        self.resetting = False
        self.reset_done = asyncio.Event()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        resetting_at_start = self.resetting
        await asyncio.sleep(0.001)
        if not resetting_at_start and not self.reset_done.is_set():
            return {}  # B's first fetch response arrives only while A's reset is pending
        position = self.positions.get(B)
        if position is None or position >= len(self.log):
            return {}
        records = self.log[position : position + BATCH]
        self.positions[B] = records[-1].offset + 1
        if not self.reset_done.is_set():
            asyncio.get_running_loop().call_later(0.005, self.reset_done.set)  # A's ListOffsets answers
        return {B: records}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.resetting = True
        await self.reset_done.wait()
        self.resetting = False
        for tp in partitions:
            self.positions[tp] = 0


class _Store(OffsetsStore):
    def __init__(self) -> None:
        super().__init__({A: None, B: STORED}, processed=STORED)  # another replica counted B's 0-4

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        await asyncio.sleep(0.001)  # a round trip: the loop runs meanwhile
        return await super().load_stored(partitions)


@pytest.mark.parametrize("committed", [0, 7], ids=["committed-below-stored", "committed-above-stored"])
async def test_a_batch_fetched_while_a_reload_waits_for_a_log_start_is_read_again(committed: int) -> None:
    consumer, store = _Consumer(committed), _Store()
    agent = TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent._last_rewind_check = agent._last_id_check = 1e18
    run = asyncio.create_task(agent.run())
    callback = asyncio.create_task(agent.on_assigned({A, B}))  # aiokafka's coordinator task
    try:
        for _ in range(500):
            await asyncio.sleep(0.002)
            if store.stored[B] == EVENTS and agent._inflight is None and callback.done():
                break
        await asyncio.sleep(0.02)
    finally:
        run.cancel()
        await asyncio.gather(run, callback, return_exceptions=True)
    assert (store.stored[B], store.processed) == (EVENTS, EVENTS), store.writes
    assert store.writes[0] == (STORED, 10), store.writes  # read again from the stored offset
