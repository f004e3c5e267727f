"""The tap agent: reads events.raw and the enriched topic in batches and folds them into the tables.

Records do not pass through Faust's per-event Stream machinery, which is far slower than a batch fold
(docs/design.md says why, docs/performance.md has the figures). Offsets live
in Redis with the state, so Kafka's committed offsets for this group are informational. The Kafka
consumer, the store and the dead-letter sink are passed in: the same code runs against real clients
and against the deterministic simulator's fakes (tests/sim).

Exactness rests on one rule: a batch claims exactly the offsets its records came from. Every seek
(assignment, a refused write's reload, a rewind, a reset) starts a new epoch, and records fetched in an
older epoch are dropped and re-read, never written under offsets computed after the seek.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from redis.exceptions import RedisError

from agents.fold import FoldContext, fold_enriched, fold_raw
from agents.log_changes import LogChanges
from agents.offsets import RESET_REASONS
from agents.stalls import PartitionUnreadable, Stalls
from agents.tap_settings import TapSettings
from core.calendar import DayCalendar
from core.ratelog import RateLimitedLog
from core.retry import retry
from core.status import StalledPartition, Status
from tables.delta import Delta, Rejection
from tables.store import Conflict, OffsetMove, WrongKeyType

log = logging.getLogger(__name__)
COMMIT_INTERVAL_S = 1.0
FOLD_CHUNK_RECORDS = 5_000
FETCH_RETRY_S = 1.0
ASSIGNMENT_RETRY_S = 0.05  # bounds the loop if aiokafka raises again before on_assigned has run
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
Batch = dict[TopicPartition, list[ConsumerRecord]]


class TapConsumer(Protocol):
    """What the tap needs of aiokafka's AIOKafkaConsumer (read_committed, auto_offset_reset="none")."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = ..., max_records: int | None = ...
    ) -> Batch: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...
    def assignment(self) -> set[TopicPartition]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def topic_ids(self, topics: Any) -> dict[str, str | None]: ...


class StateStore(Protocol):
    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None: ...
    async def load_offsets(self, partitions: Any) -> dict[tuple[str, int], int | None]: ...
    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]: ...


class DeadLetterSink(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, rejections: list[Rejection]) -> None: ...


class TapAgent(LogChanges):
    def __init__(
        self,
        settings: TapSettings,
        store: StateStore,
        status: Status,
        consumer: TapConsumer,
        dead_letters: DeadLetterSink | None = None,
        clock: Callable[[], float] = time.time,
        pause: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(0),
    ) -> None:
        self.settings = settings
        self.store = store
        self.status = status
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.clock = clock
        self.pause = pause
        self.calendar = DayCalendar(settings.zone)
        self.rejections = RateLimitedLog(log)
        self.fetch_errors = RateLimitedLog(log)
        # Next offset to apply per owned partition; None means the tables never saw it.
        self.expected: dict[TopicPartition, int | None] = {}
        # Next offset whose write Redis has acknowledged, per owned partition: what Kafka is told.
        self.applied: dict[TopicPartition, int] = {}
        # Partitions re-reading after Redis went back in time, with the offset they had reached.
        self.catching_up: dict[TopicPartition, int] = {}
        self.topic_ids: dict[TopicPartition, str | None] = {}
        self.stored_ids: dict[TopicPartition, str | None] = {}
        self.ids_due: set[TopicPartition] = set()
        self._last_id_check = 0.0
        self.epoch = 0
        self._inflight: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self._last_commit = 0.0
        self._committed: dict[TopicPartition, int] = {}  # the offsets the last mirror commit sent
        self._last_rewind_check = 0.0
        self.stalls = Stalls(settings.stall_after_failures, FETCH_RETRY_S, settings.stall_max_backoff_seconds)
        # Every series the log-change alerts read exists from the start at 0: `increase()` cannot see the
        # first count of a series that appears with it.
        for topic in (settings.raw_topic, settings.enriched_topic):
            status.topics_recreated[topic] += 0
            status.records_skipped[topic] += 0
            for reason in RESET_REASONS:
                status.offset_resets[(topic, reason)] += 0

    async def start(self) -> None:
        if self.dead_letters is not None:
            await self.dead_letters.start()
        topics = [self.settings.raw_topic, self.settings.enriched_topic]
        self.consumer.subscribe(topics, listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        """Bounded: a write that cannot finish in time is abandoned; its offsets are never committed."""
        self.status.recovering = True  # a stopped tap holds no partitions: not ready until one runs again
        self.status.stalled = {}
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout_seconds
        try:
            await asyncio.wait_for(self._stop_writes(), timeout=self.settings.shutdown_timeout_seconds)
        except TimeoutError:
            log.warning("shutdown: the batch write in flight did not finish in time; its offsets stay unapplied")
            if self._inflight is not None:
                self._inflight.cancel()
        remaining = max(1.0, deadline - asyncio.get_running_loop().time())
        for name, closing in (("consumer", self.consumer.stop), ("dead letters", self._stop_dead_letters)):
            try:
                await asyncio.wait_for(closing(), timeout=remaining)
            except Exception as exc:
                log.warning("shutdown: closing the %s failed: %s", name, exc)

    async def _stop_writes(self) -> None:
        async with self.lock:
            await self._drain()
            await self._commit(force=True)

    async def _stop_dead_letters(self) -> None:
        if self.dead_letters is not None:
            await self.dead_letters.stop()

    async def run(self) -> None:
        while True:
            epoch = self.epoch
            try:
                batch = await self.consumer.getmany(
                    timeout_ms=self.settings.batch_timeout_ms, max_records=self.settings.batch_max_records
                )
            except asyncio.CancelledError:
                raise
            except PartitionUnreadable as exc:
                await self._unreadable(exc)
                continue
            except OffsetOutOfRangeError as exc:
                await self.out_of_range(exc.args[0] if exc.args else {})
                await self._after_failed_fetch()
                continue
            except NoOffsetForPartitionError:
                # Partitions just assigned, which aiokafka tried to position before on_assigned sought them
                # (auto_offset_reset="none"): not a failure. Waiting the failure's second here delayed the
                # first events after every start and rebalance by up to that second (docs/performance.md).
                await self._after_failed_fetch()
                await asyncio.sleep(ASSIGNMENT_RETRY_S)
                continue
            except Exception as exc:
                # The lag probe's broker check owns broker_ok: a fetch that returns nothing says nothing.
                self.status.fetch_errors += 1
                self.fetch_errors.warning(type(exc).__name__, "fetch failed: %s: %s", type(exc).__name__, exc)
                await self._after_failed_fetch()
                await asyncio.sleep(FETCH_RETRY_S)
                continue
            if batch:
                await self.process(batch, epoch)
            await self._commit()
            await self._check_rewind()
            await self.check_identity_due()
            if self.stalls.waiting:
                await self._retry_stalled()

    async def _after_failed_fetch(self) -> None:
        """A getmany that raises may already have moved positions past records it then dropped (aiokafka
        collects partition after partition and drops them all when one raises): read again from `expected`."""
        async with self.lock:
            await self._resync()

    async def _unreadable(self, exc: PartitionUnreadable) -> None:
        """One partition's records failed to read: read again, and pause it alone once it keeps failing.

        Under the lock, as the rebalance callbacks run: a pause never lands between their forgetting and
        their seeks, where nothing would resume it."""
        self.status.fetch_errors += 1
        tp = exc.partition
        self.fetch_errors.warning(
            f"{tp}", "fetch failed on %s/%d at offset %s: %s", tp.topic, tp.partition, exc.offset, exc.cause
        )
        async with self.lock:
            now = asyncio.get_running_loop().time()
            if tp in self.expected and self.stalls.failed(exc, self.expected[tp], now):
                self.consumer.pause(tp)
                stall = self.stalls.paused[tp]
                log.error(
                    "%s/%d paused: its records at offset %s cannot be read (%s); the other partitions go on, "
                    "this one is tried again in %.0f s",
                    tp.topic,
                    tp.partition,
                    stall.offset,
                    stall.detail,
                    stall.retry_at_s - now,
                )
            self._count_stalled()
            await self._resync()  # what getmany collected from the other partitions was dropped
        if tp not in self.stalls.paused:
            await asyncio.sleep(FETCH_RETRY_S)

    async def _retry_stalled(self) -> None:
        """Resume paused partitions whose back-off is over, and let retries that stopped failing go."""
        async with self.lock:
            now = asyncio.get_running_loop().time()
            due = self.stalls.due(now)
            owned = [tp for tp in due if tp in self.expected]
            self.stalls.forget([tp for tp in due if tp not in self.expected])
            for tp in owned:
                await self._seek_expected(tp)
            if owned:
                self.consumer.resume(*owned)
                log.info("trying stalled partitions again: %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in owned))
            self.stalls.settle(now)
            self._count_stalled()

    def _count_stalled(self) -> None:
        ago = asyncio.get_running_loop().time() - self.clock()  # loop time to wall time
        self.status.stalled = {
            (tp.topic, tp.partition): StalledPartition(s.offset, s.reason, s.detail, s.since_s - ago)
            for tp, s in self.stalls.stalled().items()
        }

    async def process(self, batch: Batch, epoch: int) -> None:
        """Fold this batch while the previous one is written, then send this one.

        Writes stay in order (each batch's stored-offset check needs the previous one written), and
        `expected` moves ahead optimistically: a write that is refused reloads the stored offsets.
        """
        async with self.lock:
            if epoch != self.epoch:
                await self._resync()
                return
            fresh, starts = self._fresh(batch)
            if not fresh:
                return
            self.status.records_folded += sum(len(records) for records in fresh.values())
            delta = await self._fold(fresh)
            await self._drain()
            if epoch != self.epoch:
                # The write before this one was refused and the partitions were sought back meanwhile:
                # these records were fetched from positions that no longer hold. Read them again.
                await self._resync()
                return
            moves = [self._move(tp, starts[tp], records[-1].offset + 1) for tp, records in fresh.items()]
            for m in moves:
                self.expected[TopicPartition(m.topic, m.partition)] = m.next_offset
            self._inflight = asyncio.create_task(self._apply(delta, moves))

    async def _drain(self) -> None:
        """Wait for the batch write in flight, if any (callers hold the lock)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    def _fresh(self, batch: Batch) -> tuple[Batch, dict[TopicPartition, int | None]]:
        """Records of owned partitions at or past the expected offset, and the offset each batch claims from.

        A partition whose topic ID is unsettled is put back to its stored offset instead: read again once
        `check_identity_due` has settled it.
        """
        fresh, starts = {}, {}
        for tp, records in batch.items():
            if tp not in self.expected or not records:
                continue
            start = self.expected[tp]
            if self.identity_unsettled(tp):
                self.ids_due.add(tp)
                # Never written: nothing visible lies before this batch's first record since the seek to
                # the log start, so that is where to read again from.
                self.consumer.seek(tp, start if start is not None else records[0].offset)
                continue
            if start is not None and records[0].offset < start:
                records = [r for r in records if r.offset >= start]
            if records:
                fresh[tp], starts[tp] = records, start
        return fresh, starts

    async def _resync(self) -> None:
        """Seek every owned partition back to where the tables expect it (callers hold the lock)."""
        self.epoch += 1
        for tp in self.expected:
            await self._seek_expected(tp)

    async def _seek_expected(self, tp: TopicPartition) -> None:
        offset = self.expected[tp]
        if offset is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    async def _fold(self, batch: Batch) -> Delta:
        s = self.settings
        ctx = FoldContext(
            calendar=self.calendar,
            now_ms=int(self.clock() * 1000),
            days_kept=s.days_kept,
            max_future_ms=s.max_future_seconds * 1000,
            max_payload_bytes=s.max_payload_bytes,
        )
        delta = Delta()
        for tp, records in batch.items():
            fold = fold_raw if tp.topic == s.raw_topic else fold_enriched
            for start in range(0, len(records), FOLD_CHUNK_RECORDS):
                fold(delta, tp.topic, records[start : start + FOLD_CHUNK_RECORDS], ctx, tp.partition)
                # Let the loop breathe between chunks: the fetcher reads the next response meanwhile
                # and a scrape is answered (docs/performance.md has the measurement).
                await self.pause()
        for r in delta.rejections:
            self.rejections.warning(
                f"{r.topic}/{r.reason}",
                "invalid event skipped: topic=%s partition=%d offset=%d reason=%s",
                r.topic,
                r.partition,
                r.record.offset,
                r.reason,
            )
        return delta

    async def _apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        if self.dead_letters is not None and delta.rejections:
            await self.dead_letters.send(delta.rejections)
        try:
            await self._write(delta, moves)
        except Conflict as exc:
            self.status.batch_conflicts += 1
            log.warning("batch refused, %s moved elsewhere; reloading offsets", exc.field)
            await self._reload([TopicPartition(m.topic, m.partition) for m in moves])
            return
        self.status.batches += 1
        self.status.last_batch_at_s = self.clock()
        for m in moves:
            tp = TopicPartition(m.topic, m.partition)
            if tp in self.expected:
                self.applied[tp] = m.next_offset
                if m.topic_id is not None:
                    self.stored_ids[tp] = m.topic_id
            if tp in self.catching_up and m.next_offset >= self.catching_up[tp]:
                del self.catching_up[tp]
            if self.stalls.active:
                self.stalls.read(tp, m.next_offset)
        if self.stalls.active or self.status.stalled:
            self._count_stalled()
        self.status.rewound_partitions = len(self.catching_up)

    async def _write(self, delta: Delta, moves: list[OffsetMove]) -> None:
        """Retry until Redis answers; a key of the wrong type is retried slowly, as an operator must act."""

        def count(exc: BaseException) -> None:
            if isinstance(exc, WrongKeyType):
                self.status.wrong_key_type += 1
                log.error("state write refused: key %s holds another type; nothing was written", exc)
            else:
                self.status.redis_errors += 1

        await retry(
            lambda: self.store.apply(delta, moves),
            (*REDIS_ERRORS, WrongKeyType),
            what="state write",
            log=log,
            on_error=count,
        )

    async def _reload(self, partitions: Sequence[TopicPartition]) -> None:
        """Position owned partitions at the offsets stored with the tables, in a new epoch.

        Runs under the lock, or inside the write in flight, which every lock holder drains first.
        """
        owned = [tp for tp in partitions if tp in self.expected or tp in self.consumer.assignment()]
        keys = [(tp.topic, tp.partition) for tp in owned]
        stored = await retry(lambda: self.store.load_stored(keys), REDIS_ERRORS, what="loading offsets", log=log)
        self.epoch += 1
        for tp in owned:
            offset, self.stored_ids[tp] = stored[(tp.topic, tp.partition)]
            self.expected[tp] = offset
            if offset is None:
                self.applied.pop(tp, None)
                await self.consumer.seek_to_beginning(tp)
            else:
                self.applied[tp] = offset
                self.consumer.seek(tp, offset)

    async def _check_rewind(self, force: bool = False) -> None:
        """Notice, without waiting for traffic, a Redis that came back empty or from an older snapshot.

        With nothing in flight, the stored offset of a partition this replica owns is what it last
        applied; anything else means the state moved under it: re-read from what is stored.
        """
        now = asyncio.get_running_loop().time()
        if not force and now - self._last_rewind_check < self.settings.lag_interval_seconds:
            return
        self._last_rewind_check = now
        async with self.lock:
            await self._drain()
            owned = list(self.applied)
            if not owned:
                return
            try:
                stored = await self.store.load_offsets((tp.topic, tp.partition) for tp in owned)
            except REDIS_ERRORS as exc:
                log.debug("rewind check skipped: %s", exc)
                return
            moved = [tp for tp in owned if stored[(tp.topic, tp.partition)] != self.applied[tp]]
            if not moved:
                return
            for tp in moved:
                was = self.applied[tp]
                now_stored = stored[(tp.topic, tp.partition)]
                if now_stored is None or now_stored < was:
                    self.catching_up[tp] = max(was, self.catching_up.get(tp, was))
                log.warning(
                    "stored offset of %s moved from %d to %s under this replica; re-reading", tp, was, now_stored
                )
            self.status.state_rewinds += 1
            self.status.rewound_partitions = len(self.catching_up)
            await self._reload(moved)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.status.recovering = True
        async with self.lock:
            await self._drain()
            # A new assignment is read afresh: nothing of it stays paused (a pause made while aiokafka was
            # already handing it over would otherwise outlive what remembers it).
            held = self.consumer.assignment()
            self.consumer.resume(*(tp for tp in assigned if tp in held))
            self.stalls.forget(assigned)
            self._count_stalled()
            await self._reload(sorted(assigned))
            await self._check_identity(sorted(assigned))
        self._count_assigned()
        self.status.recovering = False
        log.info("assigned %d partitions, positioned at stored offsets", len(assigned))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self._drain()
            await self._commit(force=True)
            for tp in revoked:
                self.expected.pop(tp, None)
                self.applied.pop(tp, None)
                self.catching_up.pop(tp, None)
                self.topic_ids.pop(tp, None)
                self.stored_ids.pop(tp, None)
                self.ids_due.discard(tp)
            self.status.rewound_partitions = len(self.catching_up)
            self.stalls.forget(revoked)
            self._count_stalled()
        self._count_assigned()

    def _count_assigned(self) -> None:
        counts: dict[str, int] = {self.settings.raw_topic: 0, self.settings.enriched_topic: 0}
        for tp in self.expected:
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        self.status.assigned = counts

    async def _commit(self, force: bool = False) -> None:
        """Mirror the stored offsets into Kafka so that standard tools see this group's lag."""
        now = asyncio.get_running_loop().time()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        offsets = dict(self.applied)
        # An idle replica would otherwise send the same commit every second (docs/performance.md, idle cost).
        if not offsets or offsets == self._committed:
            return
        try:
            await self.consumer.commit(offsets)
            self._committed = offsets
        except Exception as exc:
            log.debug("offset mirror commit skipped: %s", exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, agent: TapAgent) -> None:
        self.agent = agent

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.agent.on_assigned(assigned)
