"""What the tap's unit tests share of their fakes: a record of a valid raw event; a TapConsumer's positions
moved by seeks, pauses kept, the assignment fixed, commits dropped, one topic ID (each test's fake adds its
own getmany); and a store that keeps offsets and the events counted under them together, refusing as the
batch script does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from streams.local.workload import raw_event
from tables.delta import Delta
from tables.keys import offset_field
from tables.writes import Conflict, OffsetMove


def raw_record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    """A valid raw event at `offset` of `tp`, dated now, from a user of its own."""
    value = raw_event("org", f"u{offset}", int(time.time() * 1000))
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, len(value), ())


class PositionsConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass

    async def topic_ids(self, topics: Any) -> dict[str, str | None]:
        return dict.fromkeys(topics, "id-1")


class OffsetsStore:
    """The stored offset of each partition and the events counted, moved together: a write whose moves do
    not all start at the stored offsets is refused whole (Conflict), as the batch script refuses it.
    `processed` is what Redis would count of `topic`; `writes` each accepted move (from, to)."""

    def __init__(self, stored: dict[TopicPartition, int | None], processed: int = 0, topic: str = "events.raw") -> None:
        self.stored = stored
        self.processed, self.topic = processed, topic
        self.writes: list[tuple[int | None, int]] = []

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        for m in moves:
            if m.expected != self.stored[TopicPartition(m.topic, m.partition)]:
                raise Conflict(offset_field(m.topic, m.partition))
        for m in moves:
            self.writes.append((m.expected, m.next_offset))
            self.stored[TopicPartition(m.topic, m.partition)] = m.next_offset
        self.processed += delta.processed[self.topic]

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        return {p: (self.stored[TopicPartition(*p)], "id-1") for p in partitions}

    async def load_offsets(self, partitions: Any) -> dict[tuple[str, int], int | None]:
        return {p: self.stored[TopicPartition(*p)] for p in partitions}


def run_until_cancelled(agent: Any, monkeypatch: Any) -> list[float]:
    """Run the tap's loop until its consumer cancels it; the sleeps it asked for, none of them waited."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    async def scenario() -> None:
        with monkeypatch.context() as patched:
            patched.setattr(asyncio, "sleep", recorded_sleep)
            try:
                await agent.run()
            except asyncio.CancelledError:
                return
            raise AssertionError("the loop ended without being cancelled")

    asyncio.run(scenario())
    return slept
