"""The bulk record path against aiokafka's own, on generated logs: the same records, the same positions.

Each log mixes plain batches, committed and aborted transactions with their markers, compressed
batches and a fetch offset anywhere, even inside a batch (the broker answers from the batch's start).
Both paths read it through aiokafka's FetchResult with the same sequence of `max_records`, and every
call must return the same records and leave the same position.
"""

from __future__ import annotations

import gc
import struct
import weakref
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED, FetchResult
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.bulk_fetch import BulkRecords, broken_partition, bulk_supported, take_over
from agents.stalls import CORRUPT_BATCH, UNSUPPORTED_CODEC, PartitionUnreadable
from streams.local.record_batches import (
    FakeAssignment,
    fetch_result,
    marker,
    partition_records,
    record_batch,
    with_attributes,
)

TP = TopicPartition("events.raw", 3)
GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4
UNKNOWN_CODEC = 7  # the attributes' three codec bits allow it; no Kafka codec has it


@dataclass
class Log:
    batches: list[bytes] = field(default_factory=list)
    aborted: list[tuple[int, int]] = field(default_factory=list)  # (producer id, first offset)
    end: int = 0


@st.composite
def logs(draw: Any) -> Log:
    log = Log()
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["plain", "commit", "abort"]))
        n = draw(st.integers(1, 5))
        values = [b"v%d" % (log.end + i) for i in range(n)]
        codec = draw(st.sampled_from([0, GZIP, SNAPPY, LZ4, ZSTD]))
        if kind == "plain":
            log.batches.append(record_batch(log.end, values, codec=codec))
            log.end += n
            continue
        producer = draw(st.integers(1, 2))
        first = log.end
        log.batches.append(record_batch(log.end, values, producer=producer, transactional=True, codec=codec))
        log.end += n
        if kind == "abort":
            log.aborted.append((producer, first))
        log.batches.append(marker(log.end, producer, commit=kind == "commit"))
        log.end += 1
    return log


def _fetch(log: Log, fetch_offset: int, isolation: int) -> tuple[FetchResult, FakeAssignment]:
    """What the broker answers a fetch at `fetch_offset`: every batch that ends after it, whole."""
    batches = []
    base = 0
    for data in log.batches:
        count = struct.unpack_from(">i", data, 23)[0] + 1  # lastOffsetDelta + 1
        if base + count > fetch_offset:
            batches.append(data)
        base += count
    records = partition_records(TP, b"".join(batches), fetch_offset, log.aborted, isolation)
    return fetch_result(TP, records, fetch_offset)


def _fields(records: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in records]


def _read(result: FetchResult, assignment: FakeAssignment, takes: list[int | None]) -> list[tuple[Any, ...]]:
    steps = []
    for n in takes:
        got = result.getall(n) if result.has_more() else []
        steps.append((_fields(got), assignment.state.position, result.has_more()))
    return steps


@settings(max_examples=300, deadline=None)
@given(
    log=logs(),
    data=st.data(),
    isolation=st.sampled_from([READ_COMMITTED, READ_UNCOMMITTED]),
    takes=st.lists(st.one_of(st.none(), st.integers(1, 7)), min_size=1, max_size=8),
)
def test_bulk_path_returns_what_aiokafka_returns_and_moves_alike(
    log: Log, data: Any, isolation: int, takes: list[int | None]
) -> None:
    fetch_offset = data.draw(st.integers(0, log.end))
    theirs = _read(*_fetch(log, fetch_offset, isolation), takes)
    result, assignment = _fetch(log, fetch_offset, isolation)
    assert take_over({TP: result}) == 1
    assert isinstance(result._partition_records, BulkRecords)
    assert _read(result, assignment, takes) == theirs


def test_generated_logs_hold_what_the_comparison_needs() -> None:
    """The generator reaches what matters: aborted records are dropped, markers move the position."""
    log = Log()
    log.batches = [
        record_batch(0, [b"a", b"b"]),
        record_batch(2, [b"x"], producer=1, transactional=True),
        marker(3, 1, commit=False),
    ]
    log.aborted = [(1, 2)]
    log.batches.append(record_batch(4, [b"c"], codec=GZIP))
    log.batches.append(record_batch(5, [b"d"], producer=2, transactional=True))
    log.batches.append(marker(6, 2, commit=True))
    result, assignment = _fetch(log, 1, READ_COMMITTED)
    take_over({TP: result})
    got = result.getall(None)
    assert [(r.offset, r.value) for r in got] == [(1, b"b"), (4, b"c"), (5, b"d")]
    assert assignment.state.position == 7  # past the commit marker
    assert not result.has_more()


def test_a_batch_failing_its_crc_ends_the_result_at_its_start() -> None:
    good, bad, after = record_batch(0, [b"a", b"b"]), bytearray(record_batch(2, [b"c"])), record_batch(3, [b"d"])
    bad[-1] ^= 0xFF
    log = Log(batches=[good, bytes(bad), after], end=4)
    theirs, their_assignment = _fetch(log, 0, READ_COMMITTED)
    with pytest.raises(CorruptRecordException):
        theirs.getall(None)
    result, assignment = _fetch(log, 0, READ_COMMITTED)
    take_over({TP: result})
    assert [r.value for r in result.getall(None)] == [b"a", b"b"]
    assert assignment.state.position == 2  # the fetcher asks for the bad batch again
    assert their_assignment.state.position == 0  # aiokafka raised before moving


def test_a_result_aiokafka_started_reading_is_left_to_it() -> None:
    log = Log(batches=[record_batch(0, [b"a", b"b", b"c"])], end=3)
    result, assignment = _fetch(log, 0, READ_COMMITTED)
    assert [r.value for r in result.getall(1)] == [b"a"]
    assert take_over({TP: result, TopicPartition("other", 0): ValueError("an error result")}) == 0
    assert [r.value for r in result.getall(None)] == [b"b", b"c"]
    assert assignment.state.position == 3


def test_only_the_checked_aiokafka_version_takes_the_bulk_path() -> None:
    assert bulk_supported("0.14.0")
    assert not bulk_supported("0.15.0")
    assert bulk_supported()  # the locked version: if this fails, re-check agents/bulk_fetch.py against it


def _unreadable(base: int, values: list[bytes]) -> bytes:
    """A batch whose CRC holds but whose codec no reader knows."""
    return with_attributes(record_batch(base, values), UNKNOWN_CODEC)


def test_an_unreadable_batch_delivers_what_precedes_it_and_then_raises_without_moving() -> None:
    log = Log(batches=[record_batch(0, [b"a", b"b"]), _unreadable(2, [b"c"]), record_batch(3, [b"d"])], end=4)
    result, assignment = _fetch(log, 0, READ_COMMITTED)
    take_over({TP: result})
    assert [r.value for r in result.getall(None)] == [b"a", b"b"]
    assert assignment.state.position == 2  # stops at the unreadable batch
    # The next fetch starts with it: nothing read yet, so the error surfaces, naming the partition and
    # the batch, and the position stays.
    result, assignment = _fetch(log, 2, READ_COMMITTED)
    take_over({TP: result})
    with pytest.raises(PartitionUnreadable) as raised:
        result.getall(None)
    assert (raised.value.partition, raised.value.offset, raised.value.reason) == (TP, 2, UNSUPPORTED_CODEC)
    assert isinstance(raised.value.cause, UnsupportedCodecError)
    assert result.getall(None) == []
    assert assignment.state.position == 2  # never past offset 3, which was not delivered
    assert not result.has_more()


@pytest.mark.parametrize(("bad", "reason"), [("codec", UNSUPPORTED_CODEC), ("crc", CORRUPT_BATCH)])
def test_aiokafkas_own_path_names_the_partition_that_failed(bad: str, reason: str) -> None:
    """What arrives while getmany waits is read by aiokafka's generator: after it raised, the failed
    result is the one whose generator ended by raising, and the tap is told which partition it was."""
    if bad == "codec":
        broken = _unreadable(0, [b"a"])
    else:
        data = bytearray(record_batch(0, [b"a"]))
        data[-1] ^= 0xFF
        broken = bytes(data)
    healthy, _ = _fetch(Log(batches=[record_batch(0, [b"x"])], end=1), 0, READ_COMMITTED)
    result, _ = _fetch(Log(batches=[broken], end=1), 0, READ_COMMITTED)
    other = TopicPartition("events.enriched", 0)
    results = {other: healthy, TP: result}
    assert broken_partition(results) is None
    with pytest.raises((UnsupportedCodecError, CorruptRecordException)) as raised:
        result.getall(None)
    assert broken_partition(results) == TP
    assert PartitionUnreadable(TP, None, raised.value).reason == reason
    assert [r.value for r in healthy.getall(None)] == [b"x"]
    assert broken_partition(results) == TP


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
def test_every_kafka_codec_reads_on_both_paths(codec: int) -> None:
    values = [b'{"org_id":"o%d","n":%d}' % (i % 3, i) * 20 for i in range(50)]
    log = Log(batches=[record_batch(0, values[:30], codec=codec), record_batch(30, values[30:], codec=codec)], end=50)
    theirs, _ = _fetch(log, 0, READ_COMMITTED)
    ours, position = _fetch(log, 0, READ_COMMITTED)
    take_over({TP: ours})
    assert [r.value for r in theirs.getall(None)] == values
    assert [r.value for r in ours.getall(None)] == values
    assert position.state.position == 50
    assert len(b"".join(log.batches)) < len(b"".join(values)) // 3  # compressed, not stored plain


@pytest.mark.parametrize("take", [None, 1])
def test_a_result_and_its_fetched_buffer_are_freed_without_the_cyclic_collector(take: int | None) -> None:
    # A PartitionRecords left in a reference cycle kept its fetched buffer until a full collection: the
    # sidecar's memory grew by hundreds of MB under load.
    log = Log(batches=[record_batch(0, [b"a", b"b"]), record_batch(2, [b"c"])], end=3)
    gc.disable()
    try:
        result, _ = _fetch(log, 0, READ_COMMITTED)
        source = weakref.ref(result._partition_records)
        take_over({TP: result})
        got = result.getall(take)
        assert len(got) == (1 if take else 3)
        del result, got
        assert source() is None
    finally:
        gc.enable()
