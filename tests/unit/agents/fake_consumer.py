"""The part of a fake TapConsumer the tap's unit tests share: positions moved by seeks, pauses kept, the
assignment fixed, commits dropped, one topic ID. Each test's fake adds its own getmany."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition


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
