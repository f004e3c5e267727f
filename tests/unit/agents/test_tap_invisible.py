"""Offsets past the last record (transaction markers, aborted transactions) stored when a fetch brings
nothing, on the real TapAgent: the stored offset and Kafka's committed one reach the log's end."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from agents import invisible
from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tests.unit.agents.fakes import OffsetsStore, PositionsConsumer, raw_record

A, B = TopicPartition("events.raw", 0), TopicPartition("events.raw", 1)


class _Consumer(PositionsConsumer):
    def __init__(self) -> None:
        super().__init__({A, B})
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def topic_ids(self, topics: object) -> dict[str, str | None]:
        return {"events.raw": "id-1"}


async def _tap(stored: dict[TopicPartition, int | None]) -> tuple[TapAgent, _Consumer, OffsetsStore]:
    consumer, store = _Consumer(), OffsetsStore(dict(stored))
    tap = TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    await tap.on_assigned({A, B})
    return tap, consumer, store


async def test_a_marker_after_the_last_record_is_stored_and_committed() -> None:
    tap, consumer, store = await _tap({A: 100, B: 40})
    await tap.process({A: [raw_record(A, 100), raw_record(A, 101)]}, tap.epoch)
    consumer.positions[A] = 103  # the fetch went on over the commit marker at 102
    await tap.pass_invisible()  # the batch's write is in flight: not now (the loop goes on fetching)
    assert store.writes == [] and tap._last_pass == 0.0
    await tap._drain()
    await tap.pass_invisible()
    await tap._drain()
    assert store.writes == [(100, 102), (102, 103)]
    assert store.processed == 2 and tap.expected[A] == 103 and tap.applied[A] == 103
    await tap._commit(force=True)
    assert consumer.commits[-1] == {A: 103, B: 40}


async def test_nothing_is_written_where_the_position_is_the_expected_offset_or_the_pass_is_not_due() -> None:
    tap, consumer, store = await _tap({A: 100, B: 40})
    await tap.pass_invisible()
    await tap._drain()
    assert store.writes == []
    consumer.positions[B] = 45  # an aborted transaction of five records, found within the second
    await tap.pass_invisible()
    await tap._drain()
    assert store.writes == []
    tap._last_pass -= invisible.PASS_INTERVAL_S
    await tap.pass_invisible()
    await tap._drain()
    assert store.writes == [(40, 45)] and tap.expected == {A: 100, B: 45}


@pytest.mark.parametrize("why", ["never written", "stalled", "unpositioned", "revoked", "no position"])
async def test_partitions_not_read_from_their_expected_offset_are_left_alone(why: str) -> None:
    tap, consumer, store = await _tap({A: None if why == "never written" else 100, B: 40})
    consumer.positions[A] = 110
    if why == "stalled":
        tap.stalls.hold(A, 100, "state_write_refused", "test", 0.0)
    elif why == "unpositioned":
        tap.unpositioned = [A]
    elif why == "revoked":
        consumer.assigned = {B}
    elif why == "no position":

        async def waits_for_a_reset(tp: TopicPartition) -> int:
            await asyncio.sleep(10)
            return 110

        consumer.position = waits_for_a_reset  # type: ignore[method-assign,assignment]
    await tap.pass_invisible()
    await tap._drain()
    assert store.writes == []
