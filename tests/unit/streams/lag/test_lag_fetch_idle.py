"""Between two measurements the probe's consumer fetches nothing: every partition is left paused.

A partition left resumed after a read was fetched every fetch_max_wait_ms (50 ms) until the next
measure, which was most of an idle sidecar's CPU (docs/performance.md, "Idle and low-rate cost").
"""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from streams.lag.fetch import FirstRecordReader
from tests.unit.streams.lag.fakes import FakeConsumer, FakeLog


class TrackingConsumer(FakeConsumer):
    """Keeps the set of partitions aiokafka would fetch: assigned and not paused."""

    def __init__(self, log: FakeLog) -> None:
        super().__init__(log)
        self.fetchable: set[TopicPartition] = set()

    def assign(self, partitions: list[TopicPartition]) -> None:
        super().assign(partitions)
        self.fetchable = set(partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self.fetchable -= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.fetchable |= set(partitions)


async def test_no_partition_is_left_fetching_after_a_read() -> None:
    consumer = TrackingConsumer(FakeLog())
    tps = [TopicPartition("orders", 0)]
    fetched = await FirstRecordReader(consumer).read({tps[0]: {4}}, {}, time.monotonic() + 1)
    assert fetched.first[(tps[0], 4)].offset == 4  # type: ignore[union-attr]
    assert fetched.ends[tps[0]] == 10
    assert consumer.fetchable == set()
