"""Kafka record batches (format v2) built in memory, and aiokafka's fetch objects around them, for the tests
and the benchmark that read them through the real record path (agents/bulk_fetch.py and aiokafka's own)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

CONTROL_FLAG = 0x20  # attributes bit 5: a control batch


def record_batch(
    base: int,
    values: Sequence[bytes | None],
    *,
    timestamp_ms: int | None = None,
    timestamps: Sequence[int] | None = None,
    keyed: bool = True,
    key: bytes | None = None,
    producer: int = -1,
    transactional: bool = False,
    codec: int = 0,
) -> bytes:
    """One batch at offset `base`. Keys are `k<offset>` unless `key` is given or `keyed` is off; timestamps
    are `timestamps` (one per value), else `timestamp_ms`, else distinct per offset."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=int(transactional),
        producer_id=producer,
        producer_epoch=0 if producer >= 0 else -1,
        base_sequence=-1,
        batch_size=10**8,
    )
    for i, value in enumerate(values):
        record_key = key if key is not None else (b"k%d" % (base + i) if keyed else None)
        if timestamps is not None:
            ts = timestamps[i]
        else:
            ts = timestamp_ms if timestamp_ms is not None else 1_700_000_000_000 + base + i
        builder.append(i, timestamp=ts, key=record_key, value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the builder starts every batch at 0
    return bytes(data)


def with_attributes(batch: bytes, flags: int) -> bytes:
    """The batch with `flags` set in its attributes and its CRC made right again (it covers them)."""
    data = bytearray(batch)
    struct.pack_into(">h", data, 21, struct.unpack_from(">h", data, 21)[0] | flags)
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


def marker(base: int, producer: int, commit: bool) -> bytes:
    """A transaction marker: a control batch whose one record's key says commit (1) or abort (0)."""
    key = struct.pack(">hh", 0, 1 if commit else 0)
    batch = record_batch(base, [struct.pack(">hi", 0, 0)], producer=producer, transactional=True, key=key)
    return with_attributes(batch, CONTROL_FLAG)


class FakeState:
    """The part of aiokafka's TopicPartitionState a FetchResult moves."""

    def __init__(self, position: int) -> None:
        self.paused = False
        self.position = position

    def consumed_to(self, position: int) -> None:
        self.position = position


class FakeAssignment:
    active = True

    def __init__(self, position: int = 0) -> None:
        self.state = FakeState(position)

    def state_value(self, tp: TopicPartition) -> FakeState:
        return self.state


def partition_records(
    tp: TopicPartition,
    data: bytes,
    fetch_offset: int = 0,
    aborted: list[tuple[int, int]] | None = None,
    isolation: int = READ_COMMITTED,
) -> PartitionRecords:
    return PartitionRecords(tp, MemoryRecords(data), list(aborted or []), fetch_offset, None, None, True, isolation)


def fetch_result(tp: TopicPartition, records: object, position: int = 0) -> tuple[FetchResult, FakeAssignment]:
    """`records`: aiokafka's PartitionRecords, or the tap's BulkRecords around them."""
    assignment = FakeAssignment(position)
    return FetchResult(tp, assignment=assignment, partition_records=records, backoff=0), assignment
