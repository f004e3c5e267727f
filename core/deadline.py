"""One deadline for a whole shutdown: every step gets what is left of it, never a budget of its own.

Steps that each took up to their own share of STREAMS_SHUTDOWN_TIMEOUT_SECONDS added up to several
budgets in the worst case (a frozen Redis and a hung broker at once), which the pod's grace period then
had to cover. Here the budget is counted once, from SIGTERM; a step that finds nothing left is skipped,
and a step still running at the deadline is cancelled and not waited for (see `within`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

# Closing sockets that no peer needs to answer (a client pool's disconnect): run even past the deadline,
# bounded by this. Part of the fixed margin over the budget (docs/operations.md, "Stopping").
LOCAL_CLOSE_S = 0.5
# What a process may take past its budget before it has exited: LOCAL_CLOSE_S, then Faust's own teardown
# (measured 1.0 s after a clean stop, 2.0 s with tasks left behind: it waits 1 s for them, then 1 s before
# closing its loop), and slack for a loaded node. The Helm chart's grace period is the budget plus this.
EXIT_MARGIN_S = 5.0


class Deadline:
    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.budget_s = budget_s
        self.started_s = clock()
        self.end_s = self.started_s + budget_s

    def left(self, reserve_s: float = 0.0) -> float:
        """Seconds to the deadline, less `reserve_s` kept for the steps after this one; never negative."""
        return max(0.0, self.end_s - reserve_s - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.started_s

    @property
    def passed(self) -> bool:
        return self.left() <= 0.0

    def reserve(self, wanted_s: float) -> float:
        """What later steps keep: `wanted_s`, but never more than a quarter of the budget, so that a short
        budget still leaves the step before them most of it."""
        return min(wanted_s, self.budget_s / 4)

    async def within(
        self, step: Awaitable[Any], what: str, log: logging.Logger, reserve_s: float = 0.0, floor_s: float = 0.0
    ) -> bool:
        """Run `step` until the deadline (less `reserve_s`, at least `floor_s`); True when it ended in time.

        A step still running then is cancelled and left to end on its own: Python 3.11's `asyncio.wait_for`
        waits for a cancelled awaitable to finish, and one that swallows its cancel (a nested `wait_for`
        can) would hold the whole shutdown past its bound. An error is logged, not raised: one step that
        fails must not skip the ones after it.
        """
        task = asyncio.ensure_future(step)
        timeout_s = max(floor_s, self.left(reserve_s))
        if timeout_s > 0:
            await asyncio.wait({task}, timeout=timeout_s)
        if not task.done():
            task.cancel()
            log.warning(
                "shutdown: %s did not end within the budget (%.1fs in); going on without it", what, self.elapsed()
            )
            return False
        if task.cancelled():
            log.warning("shutdown: %s was cancelled", what)
            return False
        exc = task.exception()
        if exc is not None:
            log.warning("shutdown: %s failed: %s", what, exc)
            return False
        return True
