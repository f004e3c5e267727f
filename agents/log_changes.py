"""The tap's answers to a log that changed under its stored offsets: retention, a re-created topic, a cut log.

Both run under the tap's lock with nothing in flight, write the partition's new position (and topic ID)
in one script with no records, and then seek the partition there in a new epoch, so a crash between the
decision and the next batch decides the same way again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from agents.offsets import IN_RANGE, RECREATED, out_of_range_rule, recreated
from tables.delta import Delta
from tables.writes import Conflict, OffsetMove, WriteRefused

if TYPE_CHECKING:
    from agents.ports import Batch, TapConsumer, TapSettings
    from agents.stalls import Stalls
    from core.status import Status

log = logging.getLogger(__name__)
TOPIC_ID_ERRORS = (KafkaError, OSError, asyncio.TimeoutError)


class LogChanges:
    """Mixed into TapAgent (agents/tap.py), whose state it reads and moves."""

    if TYPE_CHECKING:
        lock: asyncio.Lock
        consumer: TapConsumer
        status: Status
        stalls: Stalls
        expected: dict[TopicPartition, int | None]
        topic_ids: dict[TopicPartition, str | None]  # the broker's, as last asked
        stored_ids: dict[TopicPartition, str | None]  # the tables', as last loaded or written
        ids_due: set[TopicPartition]  # whose topic ID must be asked for before their records are written
        _last_id_check: float
        settings: TapSettings

        async def _drain(self) -> None: ...
        async def _write(self, delta: Delta, moves: list[OffsetMove]) -> None: ...
        async def _reload(self, partitions: Sequence[TopicPartition]) -> None: ...
        def _count_stalled(self) -> None: ...
        async def _refused(self, exc: WriteRefused, moves: list[OffsetMove]) -> None: ...

    def _owned_of(self, topics: set[str]) -> list[TopicPartition]:
        return sorted(tp for tp in self.expected if tp.topic in topics)

    async def _learn_topic_ids(self, tps: Sequence[TopicPartition]) -> bool:
        """Ask the broker for the IDs of these partitions' topics (None: it has none).

        A failed request leaves them due (`ids_due`): their records are not written until it succeeds,
        as a stored ID cannot be compared with one the broker did not give.
        """
        try:
            ids = await self.consumer.topic_ids({tp.topic for tp in tps})
        except TOPIC_ID_ERRORS as exc:
            log.warning("topic IDs unavailable, asked again before those partitions are written: %s", exc)
            self.ids_due.update(tps)
            return False
        for tp in tps:
            if tp.topic not in ids:  # not named: deleted, and not created again yet
                self.ids_due.add(tp)
                continue
            self.topic_ids[tp] = ids[tp.topic]
            self.ids_due.discard(tp)
        return True

    def identity_unsettled(self, tp: TopicPartition) -> bool:
        """A batch of this partition may not be written: its topic's ID is due, or not the stored one.

        Only `_check_identity` moves a stored ID to another; a batch only adds one where none is stored.
        """
        if tp in self.ids_due:
            return True
        return recreated(self.stored_ids.get(tp), self.topic_ids.get(tp))

    async def _check_identity(self, tps: Sequence[TopicPartition]) -> None:
        """Callers hold the lock, nothing in flight: partitions stored under another topic's ID are read
        from their new topic's start, whatever offset the old one reached. Every owned partition of the
        topics asked about is checked: one topic ID covers them all."""
        tps = self._owned_of({tp.topic for tp in tps})
        known = {tp: self.topic_ids.get(tp) for tp in tps}
        if not tps or not await self._learn_topic_ids(tps):
            return
        # Never written, but the ID the tap read it under changed: its position may be the old topic's.
        unwritten = [tp for tp in tps if self.expected.get(tp) is None and recreated(known[tp], self.topic_ids.get(tp))]
        if unwritten:
            await self._reload(unwritten)
        changed = [tp for tp in tps if recreated(self.stored_ids.get(tp), self.topic_ids.get(tp))]
        if not changed:
            return
        try:
            starts = await self.consumer.beginning_offsets(changed)
        except TOPIC_ID_ERRORS as exc:
            log.warning("re-created topic found, its log start unavailable; asked again: %s", exc)
            self.ids_due.update(changed)
            return
        moves = []
        for tp in changed:
            stored = self.expected[tp]
            if stored is not None:
                self._log_recreated(tp, stored, starts[tp])
                self.status.records_skipped[tp.topic] += starts[tp]  # a new topic's offsets begin at 0
            # (An ID stored without an offset is only replaced: that partition is read from its start anyway.)
            moves.append(self._move(tp, stored, starts[tp]))
        if any(self.expected[tp] is not None for tp in changed):
            for topic in sorted({tp.topic for tp in changed}):
                self.status.topics_recreated[topic] += 1
        await self._write_moves(moves)
        await self._reload(changed)

    def ask_topic_ids(self, batch: Batch) -> asyncio.Future[dict[str, str | None]] | None:
        """The IDs of the batch's topics, asked once its fetch has answered (`same_topics` reads them).

        Only topics with an ID, known or stored: a broker without IDs is not asked for each batch."""
        topics = {tp.topic for tp in batch if self._has_id(tp)}
        return asyncio.ensure_future(self.consumer.topic_ids(topics)) if topics else None

    def _has_id(self, tp: TopicPartition) -> bool:
        return self.topic_ids.get(tp) is not None or self.stored_ids.get(tp) is not None

    async def same_topics(self, asked: asyncio.Future[dict[str, str | None]] | None, tps: list[TopicPartition]) -> bool:
        """Whether a fetched batch may be written: its topics' IDs after the fetch are those known before it.

        A topic ID never comes back once its topic is deleted, so the same ID asked before the fetch and
        after it means the fetch read that topic. A changed one means the records may be the new topic's,
        at an offset the old one reached (no error tells a fetch that): the batch is dropped, the change
        settled (`_check_identity`), and the records read again. Callers hold the lock, nothing in flight.
        """
        if asked is None:
            return True
        try:
            ids = await asked
        except TOPIC_ID_ERRORS as exc:
            log.warning("topic IDs unavailable after a fetch; its records are read again once known: %s", exc)
            self.ids_due.update(tps)
            return False
        # Not named: deleted and not created again yet (or a broker that does not know it yet).
        missing = [tp for tp in tps if self._has_id(tp) and tp.topic not in ids]
        self.ids_due.update(missing)
        changed = [tp for tp in tps if tp.topic in ids and ids[tp.topic] != self.topic_ids.get(tp)]
        if not changed:
            return not missing
        # Named without an ID where one was known: nothing to compare with until the broker names one.
        self.ids_due.update(tp for tp in changed if ids[tp.topic] is None)
        renamed = [tp for tp in changed if ids[tp.topic] is not None]
        for tp in renamed:
            self.topic_ids[tp] = ids[tp.topic]
        if renamed:
            await self._check_identity(renamed)
        return False

    async def check_identity_due(self) -> None:
        """From the tap's loop: partitions whose ID lookup failed are asked again (at most once a second),
        and every owned partition once per lag interval, for a topic re-created without a rebalance."""
        now = asyncio.get_running_loop().time()
        periodic = now - self._last_id_check >= self.settings.lag_interval_seconds
        if not periodic and (not self.ids_due or now - self._last_id_check < 1.0):
            return
        self._last_id_check = now
        async with self.lock:
            await self._drain()
            await self._check_identity(list(self.expected) if periodic else sorted(self.ids_due))

    async def out_of_range(self, positions: dict[TopicPartition, int]) -> None:
        """The log no longer holds the stored offset (retention, a re-created topic, a cut log)."""
        async with self.lock:
            await self._drain()
            tps = [tp for tp in positions if tp in self.expected]
            if not tps:
                return
            await self._learn_topic_ids(tps)
            try:
                starts = await self.consumer.beginning_offsets(tps)
                ends = await self.consumer.end_offsets(tps)
            except TOPIC_ID_ERRORS as exc:
                log.warning("out of range, but the log's bounds are unavailable; read again: %s", exc)
                await self._reload(tps)
                return
            moves = []
            recreated_topics = set()
            for tp in tps:
                stored = self.expected[tp]
                if stored is None or tp in self.ids_due:
                    continue  # no ID to compare the stored one with: decided once the broker gives one
                reason, resume, skipped = out_of_range_rule(
                    stored, starts[tp], ends.get(tp), self.stored_ids.get(tp), self.topic_ids.get(tp)
                )
                if reason == IN_RANGE:
                    continue  # the reload below seeks it back to the stored offset
                self.status.records_skipped[tp.topic] += skipped
                if reason == RECREATED:
                    recreated_topics.add(tp.topic)
                    self._log_recreated(tp, stored, resume)
                else:
                    self.status.offset_resets[(tp.topic, reason)] += 1
                    log.error(
                        "%s: stored offset %d is out of the log (start %d, end %s): %s; resuming at %d, "
                        "%d records skipped",
                        tp,
                        stored,
                        starts[tp],
                        ends.get(tp),
                        reason,
                        resume,
                        skipped,
                    )
                moves.append(self._move(tp, stored, resume))
                self.stalls.read(tp, resume)  # the unreadable batch, if any, is no longer where it was
            for topic in sorted(recreated_topics):
                self.status.topics_recreated[topic] += 1
            await self._write_moves(moves)
            self._count_stalled()
            # Partitions never written are sought to their (new) log start by the reload as well.
            await self._reload(tps)
            if recreated_topics:
                await self._check_identity(self._owned_of(recreated_topics))

    def _move(self, tp: TopicPartition, stored: int | None, resume: int) -> OffsetMove:
        return OffsetMove(tp.topic, tp.partition, stored, resume, self.topic_ids.get(tp), self.stored_ids.get(tp))

    async def _write_moves(self, moves: list[OffsetMove]) -> None:
        if not moves:
            return
        try:
            await self._write(Delta(), moves)
        except Conflict:
            # Another replica moved it first: the reload takes what it stored.
            self.status.batch_conflicts += 1
        except WriteRefused as exc:
            await self._refused(exc, moves)  # paused and tried again after a back-off, as a batch would be

    def _log_recreated(self, tp: TopicPartition, stored: int, start: int) -> None:
        log.error(
            "%s: the topic was deleted and created again (ID %s, stored offsets belong to ID %s); reading the "
            "new topic from offset %d instead of the old one's %d",
            tp,
            self.topic_ids.get(tp),
            self.stored_ids.get(tp),
            start,
            stored,
        )
