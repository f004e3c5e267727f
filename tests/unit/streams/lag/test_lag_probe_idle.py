"""What one probe cycle asks the brokers, on in-memory clients: nothing it does not need."""

from __future__ import annotations

import re
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError

from streams.lag.probe import LagProbe
from tests.unit.streams.lag.fakes import FakeAdmin, FakeConsumer, FakeLog


class CountingAdmin(FakeAdmin):
    """Counts ListGroups and the all-topics Metadata requests; OffsetFetch without partitions fails
    with `refuse_all` for the first `refusals` asks."""

    def __init__(self, committed: dict[str, int], refuse_all: Exception | None = None, refusals: int = 0) -> None:
        super().__init__(committed)
        self.refuse_all, self.refusals = refuse_all, refusals
        self.listings = self.all_topics = self.asked_all = 0

    async def list_consumer_groups(self) -> list[tuple[Any, ...]]:
        self.listings += 1
        return await super().list_consumer_groups()

    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        if partitions is None:
            self.asked_all += 1
            if self.refuse_all is not None and self.asked_all <= self.refusals:
                raise self.refuse_all
        return await super().list_consumer_group_offsets(group_id, group_coordinator_id, partitions)

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        self.all_topics += topics is None
        return await super().describe_topics(topics)


def lag(snap: Any, group: str) -> int:
    (p,) = snap.groups[group].partitions
    return int(p.lag_messages)


async def test_without_an_include_pattern_no_group_is_listed() -> None:
    admin = CountingAdmin({"w": 4, "other": 7})
    probe = LagProbe(admin, FakeConsumer(FakeLog()), "w", "orders", fetch_timeout_ms=200)
    for _ in range(3):
        snap = await probe.measure()
        assert sorted(snap.groups) == ["w"] and lag(snap, "w") == 6
    assert admin.listings == 0


async def test_an_include_pattern_lists_the_groups_every_cycle() -> None:
    admin = CountingAdmin({"w": 4, "other": 7})
    probe = LagProbe(admin, FakeConsumer(FakeLog()), "w", "orders", re.compile(".*"), fetch_timeout_ms=200)
    for _ in range(2):
        snap = await probe.measure()
        assert sorted(snap.groups) == ["other", "w"] and lag(snap, "other") == 3
    assert admin.listings == 2


async def test_a_coordinator_not_ready_at_start_is_not_taken_for_a_refusal() -> None:
    # Kafka just started: the first ask fails because the group has no coordinator yet.
    admin = CountingAdmin({"w": 4}, GroupCoordinatorNotAvailableError(), refusals=1)
    probe = LagProbe(admin, FakeConsumer(FakeLog()), "w", "orders", fetch_timeout_ms=200)
    for _ in range(4):
        assert lag(await probe.measure(), "w") == 6
    # Asked again on the second cycle and answered: only the first cycle described every topic.
    assert (admin.asked_all, admin.all_topics) == (2 + 3, 1)  # 2 asks, then the reads of cycles 2 to 4


async def test_a_broker_that_refuses_is_asked_once() -> None:
    # Tansu drops the connection: every cycle names the partitions, and the question is not asked again.
    admin = CountingAdmin({"w": 4}, KafkaConnectionError(), refusals=10**6)
    probe = LagProbe(admin, FakeConsumer(FakeLog()), "w", "orders", fetch_timeout_ms=200)
    for _ in range(3):
        assert lag(await probe.measure(), "w") == 6
    assert (admin.asked_all, admin.all_topics) == (1, 3)
