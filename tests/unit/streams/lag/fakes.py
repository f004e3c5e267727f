"""In-memory Kafka for the lag probe's unit tests: a log per partition, an admin client and a consumer that
answer from it as aiokafka's do."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import OffsetAndMetadata

from streams.lag.model import LagSnapshot
from streams.lag.probe import LagProbe

TP = TopicPartition("orders", 0)


@dataclass
class FakeLog:
    """One partition: offsets 0..9 are data records stamped a minute ago; the LSO is 10."""

    ts_ms: list[int] = field(default_factory=lambda: [int(time.time() * 1000) - 60_000 + i for i in range(10)])
    slow: bool = False  # a broker that never answers a fetch before the deadline
    no_end: bool = False  # ListOffsets fails too (a broker just thawed, a leader moving)


class FakeAdmin:
    def __init__(self, committed: dict[str, int]) -> None:
        self.committed = committed

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def list_consumer_groups(self) -> list[tuple[Any, ...]]:
        return [(g, "consumer") for g in self.committed]

    async def find_coordinator(self, group_id: str) -> int:
        return 1

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        return [SimpleNamespace(groups=[(0, g, "Empty", "consumer", "", []) for g in group_ids])]

    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        if group_id not in self.committed:
            return {}
        return {TP: OffsetAndMetadata(self.committed[group_id], "")}

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        return [{"error_code": 0, "topic": "orders", "is_internal": False, "partitions": [{"partition": 0}]}]


class FakeConsumer:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}
        self.hw: dict[TopicPartition, int] = {}
        self.fetches = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions, self.hw = {}, {}

    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.hw.get(partition)

    def last_stable_offset(self, partition: TopicPartition) -> int | None:
        return self.hw.get(partition)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        if self.log.slow:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self.fetches += 1
        out = {}
        for tp in partitions:
            self.hw[tp] = len(self.log.ts_ms)
            pos = self.positions[tp]
            if pos < len(self.log.ts_ms):
                out[tp] = [SimpleNamespace(offset=pos, timestamp=self.log.ts_ms[pos])]
                self.positions[tp] = pos + 1
        return out

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.log.no_end:
            raise KafkaTimeoutError("ListOffsets")
        return dict.fromkeys(partitions, len(self.log.ts_ms))


def probe(log: FakeLog, committed: dict[str, int]) -> LagProbe:
    return LagProbe(FakeAdmin(committed), FakeConsumer(log), "w", "orders", re.compile(".*"), fetch_timeout_ms=200)


def lag_of(snap: LagSnapshot, group: str) -> tuple[int, float | None]:
    (p,) = snap.groups[group].partitions
    return p.lag_messages, p.lag_seconds
