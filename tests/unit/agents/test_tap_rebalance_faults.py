"""The rebalance callbacks when something fails: an assignment that cannot be positioned (a stored offset
that is not a number) is logged, counted, shown on /ready and tried again with a growing back-off instead
of at every fetch; a revocation forgets its partitions whatever the write in flight raised; a resync seeks
only partitions aiokafka still assigns (it refuses the others)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, NoOffsetForPartitionError

from agents import rebalance
from agents.tap import TapAgent
from core.retry import Backoff
from core.status import Status
from streams.settings import Settings
from tables.writes import InvalidStoredValue
from tests.unit.agents.fakes import PositionsConsumer

TP = TopicPartition("events.raw", 0)
GONE = TopicPartition("events.raw", 1)


class _Consumer(PositionsConsumer):
    """Refuses what aiokafka refuses: a fetch while an assigned partition has no position
    (auto_offset_reset="none"), and a seek of a partition it does not assign."""

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        await asyncio.sleep(0.001)
        if any(tp not in self.positions for tp in self.assigned):
            raise NoOffsetForPartitionError()
        return {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.seek(tp, 0)


class _Store:
    """The stored offset of TP is not a number until `repaired`."""

    def __init__(self) -> None:
        self.repaired = False
        self.loads: list[float] = []

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        self.loads.append(asyncio.get_running_loop().time())
        if not self.repaired:
            raise InvalidStoredValue("{s}:v3:offsets", "events.raw:0", detail="holds 'garbage'")
        return {p: (42, "id-1") for p in partitions}

    async def load_offsets(self, partitions: Any) -> dict[tuple[str, int], int | None]:
        return {p: 42 for p in partitions}


def _agent(consumer: _Consumer, store: Any = None) -> TapAgent:
    agent = TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent._last_rewind_check = 1e18  # no rewind checks: they are not what this is about
    return agent


async def test_an_assignment_that_cannot_be_positioned_is_retried_with_back_off_and_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rebalance, "POSITIONING", Backoff(0.1, 0.4))
    consumer, store = _Consumer({TP}), _Store()
    agent = _agent(consumer, store)
    status = agent.status
    run = asyncio.create_task(agent.run())
    try:
        await agent.on_assigned({TP})  # returns: aiokafka would only log a raise, and go on
        assert status.assignment_failures == 1
        assert status.assignment_error is not None and "events.raw:0" in status.assignment_error
        tables = next(c for c in status.checks() if c.name == "tables_recovered")
        assert not status.ready and tables.reason is not None
        assert "cannot be positioned at their stored offsets" in tables.reason and "events.raw:0" in tables.reason
        await asyncio.sleep(0.65)  # tries at about 0.1, 0.3 (0.1 + 0.2) and 0.7 s, never every fetch
        assert len(store.loads) == 3, store.loads
        gaps = [b - a for a, b in zip(store.loads, store.loads[1:], strict=False)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps
        store.repaired = True
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not status.recovering:
                break
    finally:
        run.cancel()
    assert consumer.positions == {TP: 42}
    assert agent.status.assignment_error is None
    assert next(c for c in status.checks() if c.name == "tables_recovered").ok
    assert (status.recovering, status.ready) == (False, False)  # not ready only for the broker check, never run
    assert status.assignment_failures == 3
    assert status.assigned == {"events.raw": 1, Settings().enriched_topic: 0}
    assert agent.unpositioned == []


async def test_a_revocation_forgets_its_partitions_even_when_the_write_in_flight_failed() -> None:
    consumer = _Consumer({TP})
    agent = _agent(consumer)
    agent.expected, agent.applied = {TP: 5}, {TP: 5}

    async def failing_write() -> None:
        raise RuntimeError("the write in flight failed")

    agent._inflight = asyncio.create_task(failing_write())
    with pytest.raises(RuntimeError):
        await agent.on_revoked({TP})
    assert agent.expected == {} and agent.applied == {}
    assert agent.status.assigned == {"events.raw": 0, Settings().enriched_topic: 0}
    consumer.assigned = set()
    await agent._resync()  # nothing left to seek: no seek of a revoked partition


async def test_a_resync_seeks_only_what_aiokafka_still_assigns() -> None:
    consumer = _Consumer({TP})
    agent = _agent(consumer)
    agent.expected = {TP: 5, GONE: 7}  # GONE: revoked by aiokafka, its callback not run yet
    epoch = agent.epoch
    await agent._resync()
    assert consumer.positions == {TP: 5}
    assert agent.epoch == epoch + 1
