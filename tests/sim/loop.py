"""An asyncio event loop on virtual time: sleeps and timeouts take no wall-clock time, and runs repeat.

When nothing is ready, the loop jumps its clock to the next timer instead of waiting. When nothing is
ready and no timer is set, every task waits for something that can never come: that is a hang, and the
loop says so instead of blocking.
"""

from __future__ import annotations

import asyncio
import heapq
import selectors
from asyncio import events
from asyncio.base_events import MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
from collections.abc import Coroutine
from typing import Any


class Hang(Exception):
    """Every task waits and no timer is set: the simulated system can make no progress."""


class _NoIoSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, 0, events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Hang("no task can run and no timer is set")
        self._loop.now += max(0.0, timeout)
        return []

    def get_map(self) -> Any:
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        super().__init__(selector=_NoIoSelector(self))

    def time(self) -> float:
        return self.now

    def ready_count(self) -> int:
        return len(self._ready)  # type: ignore[attr-defined]

    # asyncio's own scheduling (3.11's base_events), step for step, without the checks a loop with no I/O,
    # no other thread and no debug mode never needs: a schedule spends much of its time here. The order of
    # callbacks and the clock's arithmetic are asyncio's, so a seed runs as it does on asyncio's own code
    # (which still runs in debug mode, or on a closed loop to raise its error).
    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:  # type: ignore[override]
        base: Any = self
        if base._debug or base._closed:
            return super().call_soon(callback, *args, context=context)
        handle = events.Handle(callback, args, self, context)
        base._ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:  # type: ignore[override]
        base: Any = self
        if when is None or base._debug or base._closed:
            return super().call_at(when, callback, *args, context=context)
        timer: Any = events.TimerHandle(when, callback, args, self, context)
        heapq.heappush(base._scheduled, timer)
        timer._scheduled = True
        return timer  # type: ignore[no-any-return]

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:  # type: ignore[override]
        if delay is None:
            return super().call_later(delay, callback, *args, context=context)
        return self.call_at(self.now + delay, callback, *args, context=context)

    def _run_once(self) -> None:
        base: Any = self
        if base._debug:
            super()._run_once()  # type: ignore[misc]
            return
        scheduled = base._scheduled
        count = len(scheduled)
        if count > 100 and base._timer_cancelled_count / count > 0.5:
            kept = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    kept.append(handle)
            heapq.heapify(kept)
            base._scheduled = scheduled = kept
            base._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                base._timer_cancelled_count -= 1
                heapq.heappop(scheduled)._scheduled = False
        ready = base._ready
        if ready or base._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0, scheduled[0]._when - self.now), MAXIMUM_SELECT_TIMEOUT)
        else:
            raise Hang("no task can run and no timer is set")
        self.now += max(0.0, timeout)  # what the selector's wait does
        end_time = self.now + base._clock_resolution
        while scheduled:
            if scheduled[0]._when >= end_time:
                break
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            ready.append(handle)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()


def run_virtually(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on a fresh virtual-time loop, then cancel and collect whatever tasks it left behind."""
    loop = VirtualTimeLoop()
    # A violation raised inside a task is re-raised by the driver; asyncio's report of the same exception
    # when the dead task is collected would only repeat it.
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        loop.run_until_complete(main)
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks))
        loop.close()
