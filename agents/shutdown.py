"""The tap's stop: one deadline for the drain of the write in flight, the last commit and the clients'
close (core/deadline.py); a mixin of TapAgent (agents/tap.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.deadline import Deadline

if TYPE_CHECKING:
    from agents.ports import DeadLetterSink, TapConsumer, TapSettings
    from core.status import Status

log = logging.getLogger("agents.tap")
CLOSE_RESERVE_S = 2.0  # kept from the write's wait to close the consumer: its partitions move at once


class Shutdown:
    if TYPE_CHECKING:
        settings: TapSettings
        status: Status
        consumer: TapConsumer
        dead_letters: DeadLetterSink | None
        lock: asyncio.Lock
        _inflight: asyncio.Task[None] | None

        async def _drain(self) -> None: ...
        async def _commit(self, force: bool = False) -> None: ...

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Within `deadline` (by default STREAMS_SHUTDOWN_TIMEOUT_SECONDS from now): the write in flight is
        waited for, never cancelled; one that cannot finish in time is left behind, its offsets uncommitted."""
        if deadline is None:
            deadline = Deadline(self.settings.shutdown_timeout_seconds, asyncio.get_running_loop().time)
        self.status.recovering = True  # a stopped tap holds no partitions: not ready until one runs again
        self.status.stalled = {}
        closing_s = deadline.reserve(CLOSE_RESERVE_S)
        await deadline.within(self._stop_writes(), "the drain of the batch write in flight", log, reserve_s=closing_s)
        if self._inflight is not None and not self._inflight.done():
            log.warning("shutdown: the batch write in flight is left unacknowledged; its offsets stay uncommitted")
        await asyncio.gather(
            deadline.within(self.consumer.stop(), "closing the consumer", log),
            deadline.within(self._stop_dead_letters(), "closing the dead letters", log),
        )

    def abandon(self) -> None:
        """For a stopped tap that is replaced: a write still in flight (retrying a Redis that is down) is
        cancelled, not left retrying beside the next tap's. Safe then: the next tap reads the stored offsets
        afresh, and the script refuses a late write whose offsets no longer match (Conflict)."""
        if self._inflight is not None:
            self._inflight.cancel()

    async def _stop_writes(self) -> None:
        async with self.lock:
            await self._drain()
            await self._commit(force=True)

    async def _stop_dead_letters(self) -> None:
        if self.dead_letters is not None:
            await self.dead_letters.stop()
