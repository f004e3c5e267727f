"""Offsets a read_committed consumer moves past without a record: aborted transactions and their markers.

A batch claims offsets up to its last record, so a partition whose log ends in a transaction marker (every
committed transaction does) or in an aborted transaction keeps its stored offset, and Kafka's committed
offset that mirrors it, short of the log's end: the sidecar's own group shows a lag of one, or of the whole
aborted tail, forever. Once a second, after a batch has been handed on, positions past the expected offsets
are stored as moves with no records: nothing visible lies in between, since the records before a position
were all handed over (aiokafka moves a position as it hands records out, and past those it never will;
records fetched and not handed out leave it where it was) and every batch moves its partitions' expected
offsets to its end or seeks them back. An idle partition beside busy ones is passed as well.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from tables.delta import Delta
from tables.writes import OffsetMove

if TYPE_CHECKING:
    from agents.ports import TapConsumer
    from agents.stalls import Stalls

log = logging.getLogger(__name__)
PASS_INTERVAL_S = 1.0
POSITION_TIMEOUT_S = 0.2  # aiokafka waits for a position being reset: not worth waiting for here


class Invisible:
    """Mixed into TapAgent (agents/tap.py), whose state it reads and moves."""

    if TYPE_CHECKING:
        lock: asyncio.Lock
        consumer: TapConsumer
        stalls: Stalls
        expected: dict[TopicPartition, int | None]
        unpositioned: list[TopicPartition]
        _inflight: asyncio.Task[None] | None
        _last_pass: float

        async def _drain(self) -> None: ...
        async def _apply(self, delta: Delta, moves: list[OffsetMove]) -> None: ...
        def identity_unsettled(self, tp: TopicPartition) -> bool: ...
        def _move(self, tp: TopicPartition, stored: int | None, resume: int) -> OffsetMove: ...

    def _pass_skips(self, tp: TopicPartition) -> bool:
        """A position that may not be the tables' own is never taken as one: a partition not yet sought
        back, paused, or whose stored topic ID is settled first (agents/log_changes.py)."""
        return tp in self.unpositioned or tp in self.stalls.paused or self.identity_unsettled(tp)

    async def pass_invisible(self) -> None:
        """From the tap's loop after each fetch (and its batch's fold), at most once a second."""
        now = asyncio.get_running_loop().time()
        # Never waits, neither on the lock (a reload or a rebalance holding it may be waiting for fetches to
        # go on) nor on a write in flight (the next batch folds meanwhile): tried again on a later fetch.
        inflight = self._inflight is not None and not self._inflight.done()
        if now - self._last_pass < PASS_INTERVAL_S or self.lock.locked() or inflight:
            return
        self._last_pass = now
        async with self.lock:
            await self._drain()  # done already: collects its outcome (a refusal reloads and seeks back)
            held = self.consumer.assignment()
            moves = []
            for tp, offset in self.expected.items():
                # Never written: nothing to mirror yet, and its first batch claims from the log start.
                if offset is None or tp not in held or self._pass_skips(tp):
                    continue
                try:
                    position = await asyncio.wait_for(self.consumer.position(tp), POSITION_TIMEOUT_S)
                except Exception as exc:  # a timeout, or revoked meanwhile: tried again next time
                    log.debug("%s: position unavailable: %s", tp, exc)
                    continue
                if position > offset:
                    moves.append(self._move(tp, offset, position))
            if not moves:
                return
            for m in moves:
                self.expected[TopicPartition(m.topic, m.partition)] = m.next_offset
            self._inflight = asyncio.create_task(self._apply(Delta(), moves))
