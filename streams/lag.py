"""Consumer lag of the watched group (the enrichment worker), in messages and in seconds.

The end of a partition is read from a Fetch response's high watermark, because ListOffsets(latest)
is wrong on some Kafka-compatible brokers; ListOffsets is only a fallback when no fetch answered.
The age comes from the timestamp of the first record the group has not consumed yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: bool
    lag_messages: int
    lag_seconds: float


@dataclass
class LagSnapshot:
    partitions: list[PartitionLag]
    taken_at_s: float


def partition_lag(
    topic: str,
    partition: int,
    committed: int | None,
    log_start: int,
    end: int,
    first_unconsumed_ts_ms: int | None,
    now_ms: int,
) -> PartitionLag:
    """Lag of one partition; a group with no commit has everything from the log start to read."""
    position = log_start if committed is None else max(committed, log_start)
    messages = max(0, end - position)
    seconds = 0.0
    if messages > 0 and first_unconsumed_ts_ms is not None:
        seconds = max(0.0, (now_ms - first_unconsumed_ts_ms) / 1000)
    return PartitionLag(topic, partition, committed is not None, messages, seconds)


class LagProbe:
    """Reads committed offsets, log bounds and first unconsumed records for one topic."""

    def __init__(self, bootstrap_servers: str, topic: str, group: str, client_kwargs: dict[str, object]) -> None:
        self.topic = topic
        self.group = group
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_kwargs)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            max_partition_fetch_bytes=64 * 1024,
            **client_kwargs,
        )

    @property
    def client(self) -> AIOKafkaClient:
        """The probe's own connection to the cluster, also used to check that the brokers answer."""
        return self._consumer._client

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def measure(self, fetch_timeout_ms: int = 1000) -> LagSnapshot:
        partitions = self._consumer.partitions_for_topic(self.topic)
        if partitions is None:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not tps:
            return LagSnapshot([], time.time())
        # An explicit partition list: some brokers drop the connection without one.
        committed_meta = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        committed = {tp: m.offset for tp, m in committed_meta.items() if m is not None and m.offset >= 0}
        starts = await self._consumer.beginning_offsets(tps)
        self._consumer.assign(tps)
        for tp in tps:
            self._consumer.seek(tp, max(committed.get(tp, starts[tp]), starts[tp]))
        first_ts = await self._first_records(tps, fetch_timeout_ms)
        ends = await self._ends(tps, first_ts)
        now_ms = int(time.time() * 1000)
        result = [
            partition_lag(tp.topic, tp.partition, committed.get(tp), starts[tp], ends[tp], first_ts.get(tp), now_ms)
            for tp in tps
        ]
        return LagSnapshot(result, now_ms / 1000)

    async def _first_records(self, tps: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        found: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_ms / 1000
        pending = set(tps)
        while pending and time.monotonic() < deadline:
            batch = await self._consumer.getmany(*pending, timeout_ms=100, max_records=len(pending) * 4)
            for tp, records in batch.items():
                if records and tp in pending:
                    found[tp] = records[0].timestamp
                    pending.discard(tp)
            # A partition whose fetch came back empty at its high watermark is caught up.
            for tp in list(pending):
                hw = self._consumer.highwater(tp)
                if hw is not None and hw <= await self._consumer.position(tp):
                    pending.discard(tp)
        return found

    async def _ends(self, tps: list[TopicPartition], first_ts: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        ends: dict[TopicPartition, int] = {}
        missing = []
        for tp in tps:
            hw = self._consumer.highwater(tp)
            if hw is None:
                missing.append(tp)
            else:
                ends[tp] = hw
        if missing:
            listed = await self._consumer.end_offsets(missing)
            ends.update(listed)
        return ends
