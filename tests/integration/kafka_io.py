"""Small synchronous helpers that talk to the broker the way the gateway and the worker would, and the
names a test gives its topics and groups on a broker other tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass
class Out:
    value: bytes
    partition: int | None = None
    timestamp_ms: int | None = None


async def produce_async(bootstrap: str, topic: str, records: list[Out], compression: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", compression_type=compression)
    await producer.start()
    try:
        await _send_all(producer, topic, records)
    finally:
        await producer.stop()


async def _send_all(producer: AIOKafkaProducer, topic: str, records: list[Out]) -> None:
    """Sent without waiting one by one, so the producer batches them (compressed batches of many)."""
    futures = [await producer.send(topic, r.value, partition=r.partition, timestamp_ms=r.timestamp_ms) for r in records]
    await asyncio.gather(*futures)


def produce(bootstrap: str, topic: str, records: list[Out], compression: str | None = None) -> None:
    """`compression`: the producer's codec ("gzip", "snappy", "lz4", "zstd"); None sends batches plain."""
    asyncio.run(produce_async(bootstrap, topic, records, compression))


async def produce_transaction_async(
    bootstrap: str, topic: str, records: list[Out], commit: bool, compression: str | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"txn-{topic}-{commit}", compression_type=compression
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await _send_all(producer, topic, records)
        await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


def produce_transaction(
    bootstrap: str, topic: str, records: list[Out], commit: bool, compression: str | None = None
) -> None:
    asyncio.run(produce_transaction_async(bootstrap, topic, records, commit, compression))


async def commit_group_async(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` (partition -> offset) for `group`, as a consumer of that group would."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


def commit_group(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    asyncio.run(commit_group_async(bootstrap, group, topic, offsets))


class BrokerNamespace:
    """One test's part of the shared broker: an admin client, and topics and groups named
    `<prefix>-<uid>-<what>`, unique so that tests share the broker without sharing state (`name(".*")`
    matches them all). `workdir` is where the test's Java clients run."""

    prefix = "test"

    def __init__(self, bootstrap: str, admin: AIOKafkaAdminClient, workdir: Path) -> None:
        self.bootstrap = bootstrap
        self.admin = admin
        self.workdir = workdir
        self.uid = uuid.uuid4().hex[:8]

    def name(self, what: str) -> str:
        return f"{self.prefix}-{self.uid}-{what}"

    @classmethod
    @asynccontextmanager
    async def open(cls, bootstrap: str, workdir: Path) -> AsyncIterator[Self]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            yield cls(bootstrap, admin, workdir / "java-clients")
        finally:
            await admin.close()
