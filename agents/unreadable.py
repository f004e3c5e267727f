"""The tap's answer to records it cannot read: read again, and pause the one partition that keeps failing
(agents/stalls.py keeps the count and the back-off), while the others go on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from agents.stalls import STATE_REFUSED, PartitionUnreadable, Stalls
from core.ratelog import RateLimitedLog
from core.status import StalledPartition, Status
from tables.writes import (
    ClusterStateHidden,
    InvalidStoredValue,
    OffsetMove,
    PartialWrite,
    ScriptFailed,
    WriteRefused,
    WrongKeyType,
)

if TYPE_CHECKING:
    from agents.ports import TapConsumer

log = logging.getLogger("agents.tap")  # the tap's lines under one logger, whichever module of it logs
FETCH_RETRY_S = 1.0
# Bounded label values of ecomind_streams_state_writes_refused_total.
WRITE_REFUSALS = tuple(
    kind.reason for kind in (InvalidStoredValue, WrongKeyType, ScriptFailed, PartialWrite, ClusterStateHidden)
)


class Unreadable:
    """Mixed into TapAgent (agents/tap.py), whose state it reads and moves."""

    if TYPE_CHECKING:
        lock: asyncio.Lock
        consumer: TapConsumer
        status: Status
        stalls: Stalls
        expected: dict[TopicPartition, int | None]
        fetch_errors: RateLimitedLog
        clock: Callable[[], float]

        async def _resync(self) -> None: ...
        async def _reload(self, partitions: Sequence[TopicPartition]) -> None: ...
        async def _seek_expected(self, tp: TopicPartition) -> None: ...

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

    async def _refused(self, exc: WriteRefused, moves: list[OffsetMove]) -> None:
        """Redis refused the batch as the tables stand: sent again it would be refused again (or, after a
        script error, count twice what it wrote before failing). Its partitions are paused and put back to
        their stored offsets, then read and written again after a back-off that doubles, until an operator
        has repaired the key. Runs inside the write in flight, which every lock holder drains first."""
        self.status.writes_refused[exc.reason] += 1
        now = asyncio.get_running_loop().time()
        held = [(TopicPartition(m.topic, m.partition), m.expected) for m in moves]
        held = [(tp, start) for tp, start in held if tp in self.expected]
        detail = f"{exc.reason}: {exc}" + (f" ({exc.detail})" if exc.detail else "")
        backoff = 0.0
        for tp, start in held:
            stall = self.stalls.hold(tp, start, STATE_REFUSED, detail[:300], now)
            backoff = stall.retry_at_s - now
        if held:
            self.consumer.pause(*(tp for tp, _ in held))
        log.error(
            "state write refused (%s) on key %s: %s paused, written again in %.0f s; %s%s",
            exc.reason,
            exc,
            ", ".join(f"{tp.topic}/{tp.partition}" for tp, _ in held) or "no partition held",
            backoff,
            exc.advice,
            f"; {exc.detail}" if exc.detail else "",
        )
        await self._reload([tp for tp, _ in held])
        self._count_stalled()

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
