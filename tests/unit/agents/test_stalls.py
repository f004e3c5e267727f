"""A partition whose records cannot be read is paused alone after a few failures at one position, tried
again with a doubling back-off, and cleared only by a read past where it stalled."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError

from agents.stalls import CORRUPT_BATCH, UNREADABLE, UNSUPPORTED_CODEC, PartitionUnreadable, Stalls, reason_of

TP = TopicPartition("events.raw", 2)
OTHER = TopicPartition("events.raw", 0)


def _error(offset: int | None = 100, tp: TopicPartition = TP) -> PartitionUnreadable:
    return PartitionUnreadable(tp, offset, UnsupportedCodecError("Libraries for lz4 compression codec not found"))


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (UnsupportedCodecError("lz4"), UNSUPPORTED_CODEC),
        (CorruptRecordException("Invalid CRC"), CORRUPT_BATCH),
        (KafkaError("x"), UNREADABLE),
        (ValueError("bad varint"), UNREADABLE),
    ],
)
def test_reasons_are_a_bounded_set(exc: Exception, reason: str) -> None:
    assert reason_of(exc) == reason
    assert PartitionUnreadable(TP, 1, exc).reason == reason


@pytest.mark.parametrize(
    ("offsets", "paused_after"),
    [
        ([100, 100, 100], 3),  # the same batch three times
        ([100, 100, 140, 140, 140], 5),  # moved on in between: counting starts again
        ([100, 100], None),  # transient: not paused
        ([None, None, None], 3),  # aiokafka's own path: the position stands for the batch
    ],
)
def test_paused_after_failures_at_one_position(offsets: list[int | None], paused_after: int | None) -> None:
    stalls = Stalls(failures_before_pause=3)
    paused_at = None
    for i, offset in enumerate(offsets, start=1):
        if stalls.failed(_error(offset), position=90, now_s=float(i)) and paused_at is None:
            paused_at = i
    assert paused_at == paused_after
    if paused_after is not None:
        stall = stalls.paused[TP]
        assert stall.offset == (offsets[-1] if offsets[-1] is not None else 90)
        assert stall.reason == UNSUPPORTED_CODEC and "lz4" in stall.detail
        assert stall.retry_at_s == paused_after + 1.0


def test_back_off_doubles_up_to_its_bound_and_keeps_the_first_time() -> None:
    stalls = Stalls(failures_before_pause=1, first_backoff_s=1.0, max_backoff_s=5.0)
    now = 0.0
    assert stalls.failed(_error(), None, now)
    retries = []
    for _ in range(5):
        assert stalls.due(now) == [] or now == 0.0
        now = stalls.paused[TP].retry_at_s
        assert stalls.due(now - 0.001) == []
        assert stalls.due(now) == [TP]
        assert TP in stalls.stalled()  # still reported while it is tried
        assert stalls.failed(_error(), None, now)  # one failure on trial pauses again at once
        retries.append(stalls.paused[TP].retry_at_s - now)
    assert retries == [2.0, 4.0, 5.0, 5.0, 5.0]
    assert stalls.paused[TP].since_s == 0.0


@pytest.mark.parametrize(
    ("next_offset", "cleared"),
    [(100, False), (101, True), (250, True)],
)
def test_only_a_read_past_the_stall_clears_it(next_offset: int, cleared: bool) -> None:
    stalls = Stalls(failures_before_pause=1)
    stalls.failed(_error(100), None, 0.0)
    stalls.due(10.0)
    stalls.read(TP, next_offset)  # records before the bad batch come back without clearing it
    assert (TP not in stalls.stalled()) == cleared
    assert stalls.active != cleared


def test_partitions_are_independent_and_forgotten_on_rebalance() -> None:
    stalls = Stalls(failures_before_pause=1)
    stalls.failed(_error(100, TP), None, 0.0)
    stalls.failed(_error(7, OTHER), None, 0.0)
    stalls.read(OTHER, 8)
    assert set(stalls.stalled()) == {TP}
    stalls.forget({TP})
    assert stalls.stalled() == {} and not stalls.active


def test_a_retry_that_stops_failing_is_let_go_after_the_confirmation_time() -> None:
    """Retention may delete the unreadable batch, or it held only aborted records: no records come back
    to clear the stall, and no failure either."""
    stalls = Stalls(failures_before_pause=1, first_backoff_s=1.0, confirm_s=30.0)
    stalls.failed(_error(100), None, 0.0)
    assert stalls.due(1.0) == [TP]
    stalls.settle(30.9)
    assert TP in stalls.stalled() and stalls.waiting
    stalls.settle(31.0)
    assert stalls.stalled() == {} and not stalls.waiting


def test_failures_that_stop_recurring_are_forgotten() -> None:
    stalls = Stalls(failures_before_pause=3, confirm_s=30.0)
    stalls.failed(_error(100), None, 0.0)
    stalls.failed(_error(100), None, 1.0)
    stalls.settle(31.0)
    assert not stalls.active
    assert not stalls.failed(_error(100), None, 40.0)  # counting starts again: one failure is not three


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (UnsupportedCodecError("Libraries for lz4 compression codec not found"), "UnsupportedCodecError: Libraries"),
        (ValueError("bad varint"), "ValueError: bad varint"),
    ],
)
def test_the_error_is_named_once(exc: Exception, text: str) -> None:
    stalls = Stalls(failures_before_pause=1)
    stalls.failed(PartitionUnreadable(TP, 5, exc), None, 0.0)
    detail = stalls.paused[TP].detail
    assert detail.startswith(text) and detail.count(type(exc).__name__) == 1
