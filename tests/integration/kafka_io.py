"""Small synchronous helpers that talk to the broker the way the gateway and the worker would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


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
