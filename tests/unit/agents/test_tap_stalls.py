"""The tap's pauses against aiokafka's rebalance callbacks, which run in the coordinator's own task while
the tap loop fetches: whatever interleaving, a partition the consumer holds paused is one the tap knows
is stalled (and reports), and a retry never reads state a revocation took away."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import UnsupportedCodecError

from agents.stalls import PartitionUnreadable
from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tests.unit.agents.fakes import PositionsConsumer

TP1 = TopicPartition("events.raw", 0)  # stored offset 100, an unreadable batch there
TP2 = TopicPartition("events.raw", 1)  # nothing stored: its seek to the beginning awaits the broker


class _Consumer(PositionsConsumer):
    def __init__(self, commit_s: float = 0.0) -> None:
        super().__init__({TP1, TP2})
        self.commit_s = commit_s

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        await asyncio.sleep(0.001)
        if self.positions.get(TP1) == 100 and TP1 not in self.paused:
            raise PartitionUnreadable(TP1, 100, UnsupportedCodecError("lz4"))
        return {}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        await asyncio.sleep(0.05)  # a ListOffsets round trip, during which the tap loop runs
        for tp in partitions:
            self.positions[tp] = 0

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(self.commit_s)


class _Store:
    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        return {p: ((100, "id-1") if p == (TP1.topic, TP1.partition) else (None, None)) for p in partitions}


def _agent(consumer: _Consumer, failures: int = 1) -> TapAgent:
    settings = dataclasses.replace(Settings(), stall_after_failures=failures)
    agent = TapAgent(settings, _Store(), Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent._last_rewind_check = 1e18  # no rewind checks: they are not what this is about
    return agent


async def test_a_pause_during_an_assignment_is_known_and_reported() -> None:
    consumer = _Consumer()
    agent = _agent(consumer)
    run = asyncio.create_task(agent.run())
    try:
        await agent.on_assigned({TP1, TP2})  # the coordinator's task, while the loop fetches
        await asyncio.sleep(0.5)
        assert consumer.paused == {TP1}
        assert set(agent.stalls.stalled()) == {TP1}
        assert set(agent.status.stalled) == {(TP1.topic, TP1.partition)}
    finally:
        run.cancel()


async def test_a_retry_racing_a_revocation_leaves_the_tap_running() -> None:
    consumer = _Consumer(commit_s=0.05)  # on_revoked's forced commit takes a moment, holding the lock
    agent = _agent(consumer)
    agent.expected = {TP1: 100, TP2: 5}
    agent.applied = {TP1: 100, TP2: 5}
    consumer.positions = {TP1: 100, TP2: 5}
    loop = asyncio.get_running_loop()
    agent.stalls.failed(PartitionUnreadable(TP1, 100, UnsupportedCodecError("lz4")), 100, loop.time() - 100)
    consumer.pause(TP1)  # paused long ago: its back-off is over
    run = asyncio.create_task(agent.run())
    await asyncio.sleep(0.005)
    await agent.on_revoked({TP1, TP2})
    await asyncio.sleep(0.2)
    assert not run.done(), run.exception() if run.done() else None
    assert agent.stalls.stalled() == {} and agent.status.stalled == {}
    run.cancel()
