"""The tap's Kafka consumer: aiokafka's, without a Python object built per record.

aiokafka hands every fetched record through a Python generator that builds a `ConsumerRecord` for it:
in the benchmark's profile that was a quarter of the sidecar's CPU, about three times what parsing the
same record batches in C costs (docs/performance.md). The tap reads three fields of each record. So,
before each `getmany`, every partition result nobody has started reading is parsed batch by batch into
aiokafka's own C record objects (`offset`, `timestamp`, `key`, `value`, `headers`; no `topic` or
`partition`, which the batch's key gives), under the rules of aiokafka's `PartitionRecords`: CRC check,
aborted transactions and control batches skipped, records before the fetch offset dropped, and the same
position reported at every step. `getmany` itself, its waits, rebalances and seeks stay aiokafka's.

This reads aiokafka internals, so it runs only on the aiokafka version it was checked against
(`CHECKED_AIOKAFKA`; tests/unit/test_bulk_fetch.py holds both paths to the same records and positions
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

from streams.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_corrupt = RateLimitedLog(log, interval_s=60.0)
CHECKED_AIOKAFKA = frozenset({"0.14.0"})


def bulk_supported(version: str | None = None) -> bool:
    return (version or aiokafka.__version__) in CHECKED_AIOKAFKA


class BulkRecords:
    """Stands in for a PartitionRecords: what FetchResult uses of it is iteration and `next_fetch_offset`.

    The batches are parsed when iteration starts (a partition whose turn does not come within a
    getmany's `max_records` stays unparsed, as with aiokafka). Iteration then runs in C (a list iterator
    chained to a marker that notes the end), and the position is derived when asked: the fetch offset
    before anything was taken, the offset after the last record taken, and once the end was reached,
    the offset after the last batch, past trailing markers and aborted batches, as aiokafka reports it.
    """

    __slots__ = ("_done", "_end", "_iter", "_left", "_records", "_source", "_start")

    def __init__(self, source: PartitionRecords) -> None:
        self._source: PartitionRecords | None = source
        self._start: int = source.next_fetch_offset
        self._end: int = self._start
        self._records: list[Any] = []
        self._left = iter(self._records)
        self._iter: Iterator[Any] = self._left
        self._done = False

    def _parse(self) -> Iterator[Any]:
        if self._source is not None:
            self._records, self._end = parse(self._source)
            self._source = None
            self._left = iter(self._records)
            self._iter = chain(self._left, self._finish())
        return self._iter

    def _finish(self) -> Iterator[Any]:
        self._done = True
        yield from ()

    def __iter__(self) -> Iterator[Any]:
        return self._parse()

    def __next__(self) -> Any:
        return next(self._parse())

    @property
    def next_fetch_offset(self) -> int:
        if self._done:
            return self._end
        taken = len(self._records) - length_hint(self._left)
        return int(self._records[taken - 1].offset) + 1 if taken else self._start


def parse(pr: PartitionRecords) -> tuple[list[Any], int]:
    """The records of a PartitionRecords nobody has read, and the offset after them (its `_unpack_records`).

    A batch failing its CRC ends the result there: the records before it are delivered and the position
    stops at its start, so the fetcher reads it again, as aiokafka does after raising.
    """
    memory = pr._records
    offset = pr.next_fetch_offset
    read_committed = pr._isolation_level == READ_COMMITTED
    out: list[Any] = []
    while memory.has_next():
        batch = memory.next_batch()
        if pr._check_crcs and not batch.validate_crc():
            _corrupt.warning(f"{pr._tp}", "%s: record batch at offset %d failed its CRC; fetched again", pr._tp, offset)
            break
        if read_committed and batch.producer_id is not None:
            pr._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and pr._contains_abort_marker(batch):
                pr._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in pr._aborted_producers:
                offset = batch.next_offset
                continue
        if batch.is_control_batch:
            offset = batch.next_offset
            continue
        records = list(batch)
        if records and records[0].offset < offset:  # the broker answers from the start of the batch
            records = [r for r in records if r.offset >= offset]
        out += records
        offset = batch.next_offset
    return out, offset


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

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        fetcher = getattr(self, "_fetcher", None)
        if self.bulk and fetcher is not None:
            take_over(fetcher._records)
        return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
