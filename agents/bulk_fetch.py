"""The tap's Kafka consumer: aiokafka's, without a Python object built per record.

aiokafka hands every fetched record through a Python generator that builds a `ConsumerRecord` for it:
in the benchmark's profile that was a quarter of the sidecar's CPU, about three times what parsing the
same record batches in C costs (`python -m bench.records`, docs/performance.md). The tap reads three
fields of each record. So, before each `getmany`, every partition result nobody has started reading is
handed to a BulkRecords, which parses it batch by batch, as it is read, into aiokafka's own C record
objects (`offset`, `timestamp`, `key`, `value`, `headers`; no `topic` or `partition`, which the batch's
key gives), under the rules of aiokafka's `PartitionRecords`: CRC check, aborted transactions and
control batches skipped, records before the fetch offset dropped, and the same position reported at
every step. `getmany` itself, its waits, rebalances and seeks stay aiokafka's (and so does its way of
dropping what it collected when a later partition raises: the tap reads again from its tables' offsets
after any failed fetch, agents/tap.py). A batch that cannot be read surfaces as PartitionUnreadable,
naming its partition on both paths, so that the tap pauses that partition alone (agents/stalls.py).

This reads aiokafka internals, so it runs only on the aiokafka version it was checked against
(`CHECKED_AIOKAFKA`; tests/unit/agents/test_bulk_fetch.py holds both paths to the same records and positions
on generated logs); with any other version the consumer is aiokafka's, unchanged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from itertools import chain
from operator import length_hint
from typing import Any

import aiokafka
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException

from agents.stalls import PartitionUnreadable, describe
from agents.topic_ids import fetch_topic_ids
from core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_unreadable = RateLimitedLog(log)
CHECKED_AIOKAFKA = frozenset({"0.14.0"})


def bulk_supported(version: str | None = None) -> bool:
    return (version or aiokafka.__version__) in CHECKED_AIOKAFKA


class _Cursor:
    """Where a BulkRecords' reading stands; the generators below update it (no reference back to them, so
    that nothing here waits for the cyclic collector)."""

    __slots__ = ("batch", "before", "done", "end", "records", "yielded")

    def __init__(self, start: int) -> None:
        self.before = self.end = start  # `before`: the position before the batch being read
        self.records: list[Any] = []
        self.batch: Iterator[Any] = iter(self.records)
        self.yielded = self.done = False


class BulkRecords:
    """Stands in for a PartitionRecords: what FetchResult uses of it is iteration and `next_fetch_offset`.

    Batches are parsed one at a time as iteration reaches them, each into a list whose iterator the
    chain then runs in C; the position is derived when asked, as aiokafka's generator would report it:
    the fetch offset before anything was taken, the offset after the last record taken, and once the
    end was reached, the offset after the last batch, past trailing markers and aborted batches.
    """

    __slots__ = ("_cursor", "_iter", "_start")

    def __init__(self, source: PartitionRecords) -> None:
        # Its own generator, never to run, holds it in a reference cycle: closed, the PartitionRecords and
        # its fetched buffer are freed as soon as this is done with them, not at the next full collection.
        source._records_iterator.close()
        self._start: int = source.next_fetch_offset
        self._cursor = _Cursor(self._start)
        self._iter = chain(chain.from_iterable(_batches(source, self._cursor)), _finish(self._cursor))

    def __iter__(self) -> Iterator[Any]:
        return self._iter

    def __next__(self) -> Any:
        return next(self._iter)

    @property
    def next_fetch_offset(self) -> int:
        cursor = self._cursor
        if cursor.done:
            return cursor.end
        taken = len(cursor.records) - length_hint(cursor.batch)
        return int(cursor.records[taken - 1].offset) + 1 if taken else cursor.before


def _batches(pr: PartitionRecords, cursor: _Cursor) -> Iterator[Iterator[Any]]:
    offset = cursor.before
    try:
        for records, offset_after in parse(pr, offset):
            if records:
                cursor.before, cursor.records, cursor.batch = offset, records, iter(records)
                cursor.yielded = True
                yield cursor.batch
            offset = offset_after
        cursor.end = offset
    except Exception as exc:
        # Nothing read from this result yet: the error goes to getmany's caller and the position stays, so
        # the result is fetched again, as aiokafka does. Otherwise the records before the bad batch stand
        # and the position stops at its start: the next fetch begins with it and raises there.
        cursor.end = offset
        what = describe(exc)
        _unreadable.warning(f"{pr._tp}", "%s: record batch at offset %d unreadable: %s", pr._tp, offset, what)
        if not cursor.yielded:
            raise PartitionUnreadable(pr._tp, offset, exc) from exc


def _finish(cursor: _Cursor) -> Iterator[Any]:
    cursor.done = True
    yield from ()


def parse(pr: PartitionRecords, offset: int) -> Iterator[tuple[list[Any], int]]:
    """The records of each batch of a PartitionRecords nobody has read, and the offset after it, by the
    rules of aiokafka's `_unpack_records`; a batch failing its CRC raises CorruptRecordException there."""
    memory = pr._records
    read_committed = pr._isolation_level == READ_COMMITTED
    while memory.has_next():
        batch = memory.next_batch()
        if pr._check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {pr._tp}")
        if read_committed and batch.producer_id is not None:
            pr._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and pr._contains_abort_marker(batch):
                pr._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in pr._aborted_producers:
                yield [], batch.next_offset
                continue
        if batch.is_control_batch:
            yield [], batch.next_offset
            continue
        records = list(batch)
        if records and records[0].offset < offset:  # the broker answers from the start of the batch
            records = [r for r in records if r.offset >= offset]
        yield records, batch.next_offset
        offset = batch.next_offset


def take_over(results: dict[Any, Any]) -> int:
    """Swap every unread PartitionRecords among a fetcher's results for its BulkRecords; how many."""
    swapped = 0
    for result in results.values():
        if type(result) is not FetchResult:
            continue  # an error to raise, left to aiokafka
        pr = result._partition_records
        if type(pr) is not PartitionRecords or pr._records_iterator is None:
            continue
        if inspect.getgeneratorstate(pr._records_iterator) != inspect.GEN_CREATED:
            continue  # partly read by aiokafka's own path: it finishes it
        result._partition_records = BulkRecords(pr)
        swapped += 1
    return swapped


class TapKafkaConsumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka ships no type hints
    """AIOKafkaConsumer whose getmany returns aiokafka's C record objects for what was already fetched.

    Results that arrive while getmany waits come through aiokafka's own path (ConsumerRecords): that
    only happens when the tap had caught up, where speed does not matter. Both kinds carry the fields
    the tap reads.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk = bulk_supported()
        if not self.bulk:
            log.warning(
                "aiokafka %s is not one the bulk record path was checked against (%s): using aiokafka's own",
                aiokafka.__version__,
                ", ".join(sorted(CHECKED_AIOKAFKA)),
            )

    async def topic_ids(self, topics: Any) -> dict[str, str | None]:
        return await fetch_topic_ids(self._client, topics)

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        fetcher = getattr(self, "_fetcher", None)
        if self.bulk and fetcher is not None:
            take_over(fetcher._records)
        try:
            return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        except PartitionUnreadable:
            raise
        except Exception as exc:
            broken = broken_partition(fetcher._records) if fetcher is not None else None
            if broken is None:
                raise
            raise PartitionUnreadable(broken, None, exc) from exc


def broken_partition(results: dict[Any, Any]) -> Any:
    """The partition whose records aiokafka's own path failed to read: the one result whose record
    generator ended by raising (it stays among the results until the next getmany drops it)."""
    for tp, result in results.items():
        if type(result) is not FetchResult:
            continue
        pr = result._partition_records
        it = pr._records_iterator if type(pr) is PartitionRecords else None
        if it is not None and inspect.getgeneratorstate(it) == inspect.GEN_CLOSED:
            return tp
    return None
