"""The simulated broker's record batches, and the tap's real record path reading them.

A partition log's entries are grouped into v2 record batches as a producer writes them: consecutive
entries of one transaction (or of none), each marker a control batch of its own. A batch is encoded once,
when a fetch first serves it, and takes no entry after that, as a broker's batches are immutable; some
are compressed. A fetch answers with every batch that holds an offset in [position, limit), whole, so the
bytes can start before the position (the record path drops what precedes it), plus the aborted
transactions a read_committed consumer needs. The consumer side is aiokafka 0.14's: a PartitionRecords in
a FetchResult, kept until read, taken over by the tap's BulkRecords (agents/bulk_fetch.py) as
TapKafkaConsumer.getmany does, and drained by the fetcher's loop with `max_records`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import FetchResult

from agents.bulk_fetch import take_over
from streams.local.record_batches import marker, partition_records, record_batch, with_attributes

if TYPE_CHECKING:
    from tests.sim.kafka import Entry, PartitionLog, SimConsumer

GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4
# Most batches plain; every codec aiokafka reads (cramjam, a pinned dependency, brings snappy, lz4, zstd).
CODECS = (0, 0, 0, 0, GZIP, SNAPPY, LZ4, ZSTD)
UNKNOWN_CODEC = 7  # the attributes' codec bits allow it, no Kafka codec has it: the batch cannot be read
MAX_BATCH = 6
PRODUCER_BASE = 1000  # transaction n is written by producer id PRODUCER_BASE + n, epoch 0


@dataclass(eq=False)
class Batch:
    entries: list[Entry]
    data: bytes | None = None  # set when first served: from then on the batch takes no entry
    unreadable: bytes | None = None  # the same batch made unreadable (until the fix is deployed)


def joins_last(log: PartitionLog, txn: int | None) -> bool:
    """Whether an entry appended now goes into the log's last batch (a producer's linger), drawn from the
    log's own stream: the schedule's draws are not consumed by it."""
    if not log.entries:
        return False
    last = log.entries[-1]
    batch = last.batch
    if batch is None or batch.data is not None or last.marker or last.txn != txn:
        return False
    if batch.entries[-1] is not last or len(batch.entries) >= MAX_BATCH:
        return False
    return log.rng.random() < 0.7


def batch_at(log: PartitionLog, offset: int) -> Batch:
    """The batch holding `offset`; one a log cut went through keeps only what is left of it."""
    entry = log.entries[offset]
    batch = entry.batch
    assert batch is not None
    last = batch.entries[-1]
    if last.offset >= len(log.entries) or log.entries[last.offset] is not last:
        kept = [e for e in batch.entries if e.offset < len(log.entries) and log.entries[e.offset] is e]
        batch = Batch(kept)
        for e in kept:
            e.batch = batch
    return batch


def encoded(log: PartitionLog, batch: Batch) -> bytes:
    first = batch.entries[0]
    if batch.data is None:
        batch.data = _encode(log, batch, log.rng.choice(CODECS))
    at = log.unreadable_at
    if at is not None and first.offset <= at <= batch.entries[-1].offset and not first.marker:
        if batch.unreadable is None:
            batch.unreadable = _unreadable(_encode(log, batch, 0), corrupt=log.rng.random() < 0.5)
        return batch.unreadable
    return batch.data


def _unreadable(data: bytes, corrupt: bool) -> bytes:
    """A codec nobody has (its CRC holds), or a bit flipped in the last record's value (its CRC fails: read
    without the check, the record would decode as another)."""
    if not corrupt:
        return with_attributes(data, UNKNOWN_CODEC)
    flipped = bytearray(data)
    flipped[-2] ^= 0x01  # the value's last byte: the record ends with its header count, 0
    return bytes(flipped)


def _encode(log: PartitionLog, batch: Batch, codec: int) -> bytes:
    first = batch.entries[0]
    producer = -1 if first.txn is None else PRODUCER_BASE + first.txn
    if first.marker:
        return marker(first.offset, producer, commit=first.txn not in log.aborted)
    return record_batch(
        first.offset,
        [e.value for e in batch.entries],
        timestamps=[e.timestamp for e in batch.entries],
        keyed=False,
        producer=producer,
        transactional=first.txn is not None,
        codec=codec,
    )


def response(log: PartitionLog, position: int, limit: int) -> tuple[bytes, list[tuple[int, int]]]:
    """What the broker answers a fetch at `position` that reaches `limit`: whole batches, and the aborted
    transactions (producer id, first offset) among them."""
    chunks, at, start = [], position, None
    while at < limit:
        batch = batch_at(log, at)
        start = batch.entries[0].offset if start is None else start
        chunks.append(encoded(log, batch))
        at = batch.entries[-1].offset + 1
    aborted = [
        (PRODUCER_BASE + txn, first)
        for txn, (first, marker_at) in log.spans.items()
        if txn in log.aborted and first < at and (start is None or marker_at >= start)
    ]
    return b"".join(chunks), aborted


class _State:
    """The part of aiokafka's TopicPartitionState a FetchResult reads and moves: the consumer's own."""

    __slots__ = ("consumer", "tp")

    def __init__(self, consumer: SimConsumer, tp: TopicPartition) -> None:
        self.consumer, self.tp = consumer, tp

    @property
    def paused(self) -> bool:
        return self.tp in self.consumer.paused

    @property
    def position(self) -> int | None:
        return self.consumer.positions.get(self.tp)

    def consumed_to(self, position: int) -> None:
        self.consumer.positions[self.tp] = position


class Assignment:
    """aiokafka's Assignment: inactive once a rebalance replaced it, so what was fetched for it is dropped."""

    def __init__(self, consumer: SimConsumer) -> None:
        self.consumer = consumer

    @property
    def active(self) -> bool:
        return self.consumer.assignment_state is self and self.consumer.active

    def state_value(self, tp: TopicPartition) -> _State:
        return _State(self.consumer, tp)


def fetch(consumer: SimConsumer, tp: TopicPartition, position: int, limit: int) -> FetchResult:
    data, aborted = response(consumer.world.logs[tp], position, limit)
    records = partition_records(tp, data, position, aborted)
    return FetchResult(tp, assignment=consumer.assignment_state, partition_records=records, backoff=0)


def drain(results: dict[TopicPartition, Any], max_records: int | None) -> dict[TopicPartition, list[Any]]:
    """TapKafkaConsumer.getmany's take-over, then aiokafka 0.14's `Fetcher.fetched_records` (one pass, no
    wait): a result that raises ends the call, dropping what the others gave after moving their positions."""
    take_over(results)
    drained: dict[TopicPartition, list[Any]] = {}
    for tp in list(results):
        result = results[tp]
        records = result.getall(max_records)
        if not result.has_more():
            del results[tp]
        if not records:
            continue
        drained[tp] = records
        if max_records is not None:
            max_records -= len(records)
            if max_records == 0:
                break
    return drained


def log_rng(seed: int, tp: TopicPartition) -> random.Random:
    """A log's own stream: batch boundaries and codecs, apart from the schedule's draws."""
    return random.Random(f"{seed}:{tp.topic}:{tp.partition}:batches")
