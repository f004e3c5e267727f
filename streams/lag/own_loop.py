"""A coroutine on a thread of its own, with its own event loop: where the lag probes run.

aiokafka decodes a Fetch, Metadata or OffsetFetch answer for thousands of partitions in Python, for
hundreds of milliseconds at a stretch; on the web server's loop each of those stalls every scrape. On
its own loop a stall only delays the probe, and the web thread gets the GIL back at each switch
interval, shortened from Python's 5 ms to SWITCH_INTERVAL_S (a scrape waits for it at each of its
awaits). What crosses threads are plain attribute reads and reference swaps (a finished snapshot, the
prerendered exposition, the leader and broker flags), atomic under the GIL: no lock is shared.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
CANCEL_AGAIN_S = 0.1
# Measured with a thread rendering 2,000 groups' lag families beside a loop: that loop's p99 stall went
# from 20 ms to 9 ms (bench/lag_scale.py has the scrape figures).
SWITCH_INTERVAL_S = 0.001


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._ended.done()

    def start(self, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs `body()` on a new thread's loop; returns once it is scheduled there."""
        scheduled = threading.Event()
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))

        async def main() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            scheduled.set()
            await body()

        def run() -> None:
            try:
                asyncio.run(main())  # also cancels what `body` left running and joins its worker threads
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # the body catches its own failures: this is a bug
                log.exception("%s ended: %r", self.name, exc)
            finally:
                scheduled.set()
                self._ended.set_result(None)

        # Daemon: a body stuck past the shutdown budget must not keep the process alive.
        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        scheduled.wait()

    async def stop(self, timeout_s: float) -> bool:
        """Cancels the body (its finally blocks run on its own loop) and waits up to `timeout_s` for the
        thread to end. False when it did not: it is then left behind, as a daemon."""
        if self._thread is None:
            return True
        ended = asyncio.wrap_future(self._ended)
        deadline = time.monotonic() + timeout_s
        while not ended.done() and (left := deadline - time.monotonic()) > 0:
            # Again and again: asyncio.wait_for in Python 3.11 swallows a cancel that comes as its
            # awaitable finishes, and a probe cycle is a chain of them.
            self._cancel()
            await asyncio.wait({ended}, timeout=min(left, CANCEL_AGAIN_S))
        if not ended.done():
            log.warning("%s did not end %.0fs after its cancel; stopping without it", self.name, timeout_s)
        return ended.done()

    def _cancel(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed in between: it has ended
                loop.call_soon_threadsafe(task.cancel)


async def wait_for(awaitable: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """asyncio.wait_for, except that a cancel arriving as `awaitable` finishes is raised, not swallowed.

    Python 3.11's wait_for returns the result then. A cycle that holds its loop (a long decode, no await)
    always finishes before the cancel sent meanwhile is handled, so every cancel would be lost and the
    probe's thread never stopped; the task still counts the request (Task.cancelling)."""
    result = await asyncio.wait_for(awaitable, timeout_s)
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result
