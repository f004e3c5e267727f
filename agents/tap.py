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
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

from agents.fold import FoldContext, fold_enriched, fold_raw
from agents.invisible import Invisible
from agents.log_changes import LogChanges
from agents.offsets import RESET_REASONS
from agents.ports import Batch, DeadLetterSink, StateStore, TapConsumer, TapSettings
from agents.rebalance import POSITIONING, REDIS_ERRORS, Listener, Rebalance
from agents.shutdown import Shutdown
from agents.stalls import PartitionUnreadable, Stalls
from agents.unreadable import FETCH_RETRY_S, WRITE_REFUSALS, Unreadable
from core.calendar import DayCalendar
from core.ratelog import RateLimitedLog
from core.retry import retry
from core.status import Status
from tables.delta import Delta
from tables.writes import Conflict, OffsetMove, WriteRefused

log = logging.getLogger(__name__)
COMMIT_INTERVAL_S = 1.0
FOLD_CHUNK_RECORDS = 5_000
ASSIGNMENT_RETRY_S = 0.05  # bounds the loop if aiokafka raises again before on_assigned has run


class TapAgent(Rebalance, Unreadable, LogChanges, Invisible, Shutdown):
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
        self._last_pass = 0.0
        self.epoch = 0
        self._inflight: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self._last_commit = 0.0
        self._committed: dict[TopicPartition, int] = {}  # the offsets the last mirror commit sent
        self._last_rewind_check = 0.0
        self.stalls = Stalls(settings.stall_after_failures, FETCH_RETRY_S, settings.stall_max_backoff_seconds)
        self.unpositioned: list[TopicPartition] = []  # assigned, but on_assigned failed to seek them
        self._position_at = 0.0
        self._position_delays = POSITIONING.delays()
        # Every series the log-change alerts read exists from the start at 0 (`increase()` cannot see the
        # first count of a series that appears with it); a tap built again on the same status keeps its counts.
        for reason in WRITE_REFUSALS:
            status.writes_refused.setdefault(reason, 0)
        for topic in (settings.raw_topic, settings.enriched_topic):
            status.topics_recreated.setdefault(topic, 0)
            status.records_skipped.setdefault(topic, 0)
            for reason in RESET_REASONS:
                status.offset_resets.setdefault((topic, reason), 0)

    async def start(self) -> None:
        if self.dead_letters is not None:
            await self.dead_letters.start()
        topics = [self.settings.raw_topic, self.settings.enriched_topic]
        self.consumer.subscribe(topics, listener=Listener(self))
        await self.consumer.start()

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
                if self.unpositioned:
                    await self.retry_positioning(wait=True)
                else:
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
            await self.pass_invisible()
            await self._commit()
            await self._check_rewind()
            if self.unpositioned:  # positioned in part (the fetch did not fail): the rest when due
                await self.retry_positioning(wait=False)
            await self.check_identity_due()
            if self.stalls.waiting:
                await self._retry_stalled()

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
            asked = self.ask_topic_ids(fresh)  # answered while the batch folds
            self.status.records_folded += sum(len(records) for records in fresh.values())
            delta = await self._fold(fresh)
            await self._drain()
            if epoch != self.epoch and asked is not None:
                asked.cancel()
            # The write before this one was refused and the partitions were sought back meanwhile, or a topic
            # was re-created since the fetch: these records may not be what their offsets claim. Read again.
            if epoch != self.epoch or not await self.same_topics(asked, list(fresh)):
                await self._resync()
                return
            moves = [self._move(tp, starts[tp], records[-1].offset + 1) for tp, records in fresh.items()]
            for m in moves:
                self.expected[TopicPartition(m.topic, m.partition)] = m.next_offset
            self._inflight = asyncio.create_task(self._apply(delta, moves))

    async def _drain(self) -> None:
        """Wait for the batch write in flight, if any (callers hold the lock); it stays in `_inflight` until done.

        Shielded: a cancel (SIGTERM cancels the tap's task) stops the wait, never the write. A write cancelled
        client-side may still apply server-side (sent, or queued in a frozen Redis's socket buffer), and
        `applied` would then lag what Redis holds. Left running, its outcome is recorded when it comes; the
        script is atomic and checks the stored offsets, so state and offsets move together either way.
        """
        task = self._inflight
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._inflight is task:
                self._inflight = None

    def _fresh(self, batch: Batch) -> tuple[Batch, dict[TopicPartition, int | None]]:
        """Records of owned partitions, and the offset each batch claims from: the expected one.

        Within an epoch a partition's fetch position is its expected offset (a reload sets both and moves the
        epoch before its first seek and after its last; each batch moves both to its end), and a fetch
        returns nothing before its position, so no record here lies before its claim: nothing to filter
        (docs/guarantees.md, "What the tap's own checks are for"). A partition whose topic ID is unsettled
        is put back to its stored offset instead: read again once `check_identity_due` has settled it.
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
            fresh[tp], starts[tp] = records, start
        return fresh, starts

    async def _resync(self) -> None:
        """Seek every owned partition back to where the tables expect it (callers hold the lock).

        Only those aiokafka still assigns: between a revocation and its callback a seek would raise."""
        self.epoch += 1
        held = self.consumer.assignment()
        for tp in self.expected:
            if tp in held:
                await self._seek_expected(tp)

    async def _seek_expected(self, tp: TopicPartition) -> None:
        offset = self.expected[tp]
        if offset is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    def _fold_context(self) -> FoldContext:
        s = self.settings
        return FoldContext(
            calendar=self.calendar,
            now_ms=int(self.clock() * 1000),
            days_kept=s.days_kept,
            max_future_ms=s.max_future_seconds * 1000,
            max_payload_bytes=s.max_payload_bytes,
        )

    async def _fold(self, batch: Batch, ctx: FoldContext | None = None) -> Delta:
        """One Delta for `batch`; `ctx`: one context shared by several folds of one batch (sharded state's
        per-shard folds must agree on the day)."""
        s = self.settings
        ctx = ctx or self._fold_context()
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
        except WriteRefused as exc:
            await self._refused(exc, moves)
            return
        self._settle(moves)

    def _settle(self, moves: list[OffsetMove]) -> None:
        """What a write Redis acknowledged moved: the partitions' applied offsets, topic IDs, re-reads, stalls."""
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
        """Retry until Redis answers; a refusal (WriteRefused) is not retried here but raised."""

        def count(exc: BaseException) -> None:
            self.status.redis_errors += 1

        await retry(
            lambda: self.store.apply(delta, moves),
            REDIS_ERRORS,
            what="state write",
            log=log,
            on_error=count,
        )

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
