"""Partitions that cannot be read, paused alone so that the replica's other partitions go on.

A batch that no retry can read (a codec this process lacks, a corrupt batch, any persistent decode
error) used to fail every fetch: aiokafka drops what it collected from the other partitions when one
raises, so the whole replica stood still behind one partition. After `failures_before_pause` failed
reads at the same position only that partition is paused; it is tried again after a back-off that
doubles up to `max_backoff_s`, and resumes by itself once its batch reads (after a fix is deployed, or
a codec library installed). Nothing is skipped: the partition is always read again from the offset
stored with the tables. A partition tried again is reported stalled until records past the stall are
written, or until it has gone `confirm_s` without failing (retention may take the batch away, or it held
no records to count).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

# Bounded label values of ecomind_streams_partition_stalled.
UNSUPPORTED_CODEC = "unsupported_codec"
CORRUPT_BATCH = "corrupt_batch"
UNREADABLE = "unreadable"
STATE_REFUSED = "state_write_refused"  # its batch's state write was refused: read again after the back-off


def describe(exc: BaseException) -> str:
    """The error's class and text once (aiokafka's errors already start their text with the class)."""
    text, name = str(exc), type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:300]


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedCodecError):
        return UNSUPPORTED_CODEC
    if isinstance(exc, CorruptRecordException):
        return CORRUPT_BATCH
    return UNREADABLE


class PartitionUnreadable(Exception):
    """A fetch failed on the records of one partition; `offset` is where the unreadable batch starts
    when the record path knows it (None: somewhere at or after the partition's position)."""

    def __init__(self, partition: TopicPartition, offset: int | None, cause: BaseException) -> None:
        super().__init__(f"{partition.topic}/{partition.partition}: {describe(cause)}")
        self.partition = partition
        self.offset = offset
        self.cause = cause
        self.reason = reason_of(cause)


@dataclass
class Stall:
    offset: int | None  # the first offset not read (the stored one, or the bad batch's start)
    reason: str
    detail: str  # the error's text, for /ready and the logs
    since_s: float
    retry_at_s: float
    pauses: int = 1


class Stalls:
    """Failed reads per partition and the partitions paused for them; the tap holds one, on its loop's clock."""

    def __init__(
        self,
        failures_before_pause: int = 3,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        confirm_s: float = 30.0,
    ):
        self.failures_before_pause = failures_before_pause
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.confirm_s = confirm_s
        # (position, failed reads there, when the last one failed)
        self._failures: dict[TopicPartition, tuple[int | None, int, float]] = {}
        self.paused: dict[TopicPartition, Stall] = {}
        self._retrying: dict[TopicPartition, Stall] = {}  # resumed on trial: one more failure pauses again

    def failed(self, error: PartitionUnreadable, position: int | None, now_s: float) -> bool:
        """Count a failed read of `error.partition` at `position`; True when it must be paused now."""
        tp = error.partition
        offset = error.offset if error.offset is not None else position
        previous = self._retrying.pop(tp, None)
        if previous is not None:
            self._pause(tp, offset, error, now_s, previous.since_s, previous.pauses + 1)
            return True
        at, count, _ = self._failures.get(tp, (offset, 0, now_s))
        count = count + 1 if at == offset else 1
        self._failures[tp] = (offset, count, now_s)
        if count < self.failures_before_pause:
            return False
        self._pause(tp, offset, error, now_s, now_s, 1)
        return True

    def hold(self, tp: TopicPartition, offset: int | None, reason: str, detail: str, now_s: float) -> Stall:
        """Pause `tp` now (no count of failures first): a refused state write fails the same way again."""
        previous = self._retrying.pop(tp, None) or self.paused.get(tp)
        since_s, pauses = (previous.since_s, previous.pauses + 1) if previous else (now_s, 1)
        self._pause_as(tp, offset, reason, detail, now_s, since_s, pauses)
        return self.paused[tp]

    def _pause(
        self,
        tp: TopicPartition,
        offset: int | None,
        error: PartitionUnreadable,
        now_s: float,
        since_s: float,
        pauses: int,
    ) -> None:
        self._pause_as(tp, offset, error.reason, describe(error.cause), now_s, since_s, pauses)

    def _pause_as(
        self,
        tp: TopicPartition,
        offset: int | None,
        reason: str,
        detail: str,
        now_s: float,
        since_s: float,
        pauses: int,
    ) -> None:
        backoff = min(self.max_backoff_s, self.first_backoff_s * 2 ** (pauses - 1))
        self.paused[tp] = Stall(offset, reason, detail, since_s, now_s + backoff, pauses)
        self._failures.pop(tp, None)

    @property
    def active(self) -> bool:
        return bool(self._failures or self._retrying or self.paused)

    @property
    def waiting(self) -> bool:
        """Paused, or tried again and not yet known to read: the tap has retries or checks to make."""
        return bool(self.paused or self._retrying)

    def due(self, now_s: float) -> list[TopicPartition]:
        """Paused partitions whose back-off is over: the caller resumes them for one more try."""
        ready = [tp for tp, s in self.paused.items() if s.retry_at_s <= now_s]
        for tp in ready:
            self._retrying[tp] = self.paused.pop(tp)
        return ready

    def settle(self, now_s: float) -> None:
        """A partition tried again that has not failed for `confirm_s` reads: its batch was read, or what
        held it is gone without records to show for it (retention deleted the segment, or the batch held
        only aborted records or markers). Failures that stopped recurring are forgotten alike."""
        for tp, stall in list(self._retrying.items()):
            if stall.retry_at_s + self.confirm_s <= now_s:
                del self._retrying[tp]
        for tp, (_, _, last_s) in list(self._failures.items()):
            if last_s + self.confirm_s <= now_s:
                del self._failures[tp]

    def stalled(self) -> dict[TopicPartition, Stall]:
        """Partitions not being read: paused, or resumed for a try that has not yet succeeded."""
        return {**self._retrying, **self.paused}

    def read(self, tp: TopicPartition, next_offset: int) -> None:
        """Records of `tp` up to `next_offset` were read: a stall at an offset below it is over (records
        before an unreadable batch come back without clearing it)."""
        failure = self._failures.get(tp)
        if failure is not None and _passed(failure[0], next_offset):
            del self._failures[tp]
        for table in (self._retrying, self.paused):
            stall = table.get(tp)
            if stall is not None and _passed(stall.offset, next_offset):
                del table[tp]

    def forget(self, partitions: set[TopicPartition] | list[TopicPartition]) -> None:
        """Partitions no longer held, or assigned afresh (the tap resumes them: one source of truth)."""
        for tp in partitions:
            self._failures.pop(tp, None)
            self._retrying.pop(tp, None)
            self.paused.pop(tp, None)


def _passed(stalled_at: int | None, next_offset: int) -> bool:
    return stalled_at is None or next_offset > stalled_at
