"""The tap's rebalance callbacks and its checks of the stored offsets: every assignment, reload and rewind
positions partitions at the offsets stored with the tables, in a new epoch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from redis.exceptions import RedisError

from agents.stalls import Stalls, describe
from core.retry import Backoff, DelayIterator, retry
from core.status import Status
from tables.writes import InvalidStoredValue

if TYPE_CHECKING:
    from agents.ports import StateStore, TapConsumer, TapSettings

log = logging.getLogger("agents.tap")  # the tap's lines under one logger, whichever module of it logs
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
# Positioning assigned partitions that failed for another reason than Redis's absence (a stored offset that
# is not a number, a broker error) is tried again this often, not at every fetch.
POSITIONING = Backoff(0.5, 30.0)


class Rebalance:
    """Mixed into TapAgent (agents/tap.py), whose state it reads and moves."""

    if TYPE_CHECKING:
        lock: asyncio.Lock
        consumer: TapConsumer
        store: StateStore
        settings: TapSettings
        status: Status
        stalls: Stalls
        epoch: int
        expected: dict[TopicPartition, int | None]
        applied: dict[TopicPartition, int]
        catching_up: dict[TopicPartition, int]
        topic_ids: dict[TopicPartition, str | None]
        stored_ids: dict[TopicPartition, str | None]
        ids_due: set[TopicPartition]
        _last_rewind_check: float
        unpositioned: list[TopicPartition]
        _position_at: float
        _position_delays: DelayIterator

        async def _drain(self) -> None: ...
        async def _commit(self, force: bool = False) -> None: ...
        async def _check_identity(self, partitions: Sequence[TopicPartition]) -> None: ...
        def _count_stalled(self) -> None: ...

    async def _reload(self, partitions: Sequence[TopicPartition]) -> None:
        """Position owned partitions at the offsets stored with the tables, in a new epoch.

        Runs under the lock, or inside the write in flight, which every lock holder drains first.
        """
        owned = [tp for tp in partitions if tp in self.expected or tp in self.consumer.assignment()]
        keys = [(tp.topic, tp.partition) for tp in owned]
        stored = await retry(lambda: self.store.load_stored(keys), REDIS_ERRORS, what="loading offsets", log=log)
        self.epoch += 1
        try:
            for tp in owned:
                offset, self.stored_ids[tp] = stored[(tp.topic, tp.partition)]
                self.expected[tp] = offset
                if offset is None:
                    self.applied.pop(tp, None)
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.applied[tp] = offset
                    self.consumer.seek(tp, offset)
        finally:
            # aiokafka's seek_to_beginning waits for the log start: a fetch begun meanwhile, in the epoch
            # above, may hold records of a partition sought after it, from where aiokafka had put it (the
            # group's committed offset). Once every seek is done, the epoch moves again and drops them.
            self.epoch += 1

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
            except InvalidStoredValue as exc:
                log.warning("rewind check skipped: a stored offset is not a number: %s %s", exc, exc.detail)
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
            self._position_delays = POSITIONING.delays()
            positioned = await self._position(sorted(assigned))
        if positioned:
            self._positioned(len(assigned))

    async def _position(self, partitions: list[TopicPartition]) -> bool:
        """Seek `partitions` to their stored offsets (callers hold the lock). A failure that Redis's
        retries do not cover is kept for `retry_positioning`: aiokafka would only log it, and every fetch
        would then fail at once on the unpositioned partitions, a silent loop."""
        try:
            await self._reload(partitions)
            await self._check_identity(partitions)
        except Exception as exc:
            delay = next(self._position_delays)
            self.unpositioned = partitions
            self._position_at = asyncio.get_running_loop().time() + delay
            self.status.assignment_failures += 1
            self.status.assignment_error = describe(exc)
            log.error(
                "assigned partitions %s could not be positioned at their stored offsets, tried again in %.1f s: %s",
                ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions),
                delay,
                describe(exc),
            )
            return False
        self.unpositioned = []
        self.status.assignment_error = None
        return True

    def _positioned(self, count: int) -> None:
        self._count_assigned()
        self.status.recovering = False
        log.info("assigned %d partitions, positioned at stored offsets", count)

    async def retry_positioning(self, wait: bool) -> None:
        """Once the back-off of a failed positioning is over, try it again on what is still held; before,
        wait it out (`wait`: every fetch fails meanwhile) or return."""
        left = self._position_at - asyncio.get_running_loop().time()
        if left > 0:
            if wait:
                await asyncio.sleep(left)
            return
        async with self.lock:
            held = self.consumer.assignment()
            partitions = [tp for tp in self.unpositioned if tp in held]
            if not partitions:  # revoked meanwhile: the next assignment positions afresh
                self.unpositioned = []
                self.status.assignment_error = None
                return
            positioned = await self._position(partitions)
        if positioned:
            self._positioned(len(partitions))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            try:
                await self._drain()
                await self._commit(force=True)
            finally:
                # Whatever the write in flight raised: a partition kept here would be sought by a later
                # resync or retry, which aiokafka refuses for a partition it no longer assigns.
                for tp in revoked:
                    self.expected.pop(tp, None)
                    self.applied.pop(tp, None)
                    self.catching_up.pop(tp, None)
                    self.topic_ids.pop(tp, None)
                    self.stored_ids.pop(tp, None)
                    self.ids_due.discard(tp)
                self.unpositioned = [tp for tp in self.unpositioned if tp not in revoked]
                self.status.rewound_partitions = len(self.catching_up)
                self.stalls.forget(revoked)
                self._count_stalled()
                self._count_assigned()

    def _count_assigned(self) -> None:
        counts: dict[str, int] = {self.settings.raw_topic: 0, self.settings.enriched_topic: 0}
        for tp in self.expected:
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        self.status.assigned = counts


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, agent: Rebalance) -> None:
        self.agent = agent

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.agent.on_assigned(assigned)
