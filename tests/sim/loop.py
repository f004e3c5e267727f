"""An asyncio event loop on virtual time: sleeps and timeouts take no wall-clock time, and runs repeat.

When nothing is ready, the loop jumps its clock to the next timer instead of waiting. When nothing is
ready and no timer is set, every task waits for something that can never come: that is a hang, and the
loop says so instead of blocking.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import selectors
from asyncio import events, format_helpers, futures
from asyncio.base_events import MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
from collections.abc import Coroutine
from heapq import heapify, heappop, heappush
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


class _Handle(events.Handle):
    """asyncio's Handle as it is outside debug mode, built without asking the loop about debug mode."""

    __slots__ = ()

    def __init__(self, callback: Any, args: Any, loop: Any, context: Any) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop, self._callback, self._args = loop, callback, args
        self._cancelled, self._repr, self._source_traceback = False, None, None


class _Timer(events.TimerHandle):
    """asyncio's TimerHandle likewise; its cancel does what TimerHandle.cancel does, in one call."""

    __slots__ = ()

    def __init__(self, when: float, callback: Any, args: Any, loop: Any, context: Any) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop, self._callback, self._args = loop, callback, args
        self._cancelled, self._repr, self._source_traceback = False, None, None
        self._when, self._scheduled = when, False

    def cancel(self) -> None:
        timer: Any = self
        if timer._cancelled:
            return
        loop: Any = timer._loop
        if loop._debug:
            super().cancel()
            return
        if timer._scheduled:
            loop._timer_cancelled_count += 1
        timer._cancelled, timer._callback, timer._args = True, None, None


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        # Outside debug mode the timers wait here, each as (when, handle): heapq compares the times in C,
        # and equal times by the handles, whose `<` is false as TimerHandle's is, so the heap pops them in
        # the order asyncio's heap of TimerHandles does.
        self._timers: list[tuple[float, _Timer]] = []
        super().__init__(selector=_NoIoSelector(self))
        # BaseEventLoop.create_future's one line, without a Python frame: every sleep makes a future.
        self.create_future = functools.partial(futures.Future, loop=self)  # type: ignore[method-assign]

    def set_debug(self, enabled: bool) -> None:
        base: Any = self
        if hasattr(base, "_debug") and bool(enabled) != base._debug and (self._timers or base._scheduled):
            raise RuntimeError("the virtual loop's debug mode is chosen before any timer is set")
        super().set_debug(enabled)

    def close(self) -> None:
        super().close()
        self._timers.clear()

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
        handle = _Handle(callback, args, self, context)
        base._ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:  # type: ignore[override]
        base: Any = self
        if when is None or base._debug or base._closed:
            return super().call_at(when, callback, *args, context=context)
        timer = _Timer(when, callback, args, self, context)
        heappush(self._timers, (when, timer))
        timer._scheduled = True
        return timer

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:  # type: ignore[override]
        base: Any = self
        if delay is None or base._debug or base._closed:
            return super().call_later(delay, callback, *args, context=context)
        when = self.now + delay  # call_at's steps, inlined: every sleep comes here
        timer = _Timer(when, callback, args, self, context)
        heappush(self._timers, (when, timer))
        timer._scheduled = True
        return timer

    def _run_once(self) -> None:
        base: Any = self
        if base._debug:
            super()._run_once()  # type: ignore[misc]
            return
        # run_forever calls this again and again until the loop stops: the iterations run here back to back
        # instead, each as BaseEventLoop._run_once runs it, with one call and one lookup of the loop's parts.
        ready = base._ready
        while True:
            timers = self._timers
            count = len(timers)
            if count > 100 and base._timer_cancelled_count / count > 0.5:
                kept = []
                for entry in timers:
                    if entry[1]._cancelled:
                        entry[1]._scheduled = False
                    else:
                        kept.append(entry)
                heapify(kept)
                self._timers = timers = kept
                base._timer_cancelled_count = 0
            else:
                while timers and timers[0][1]._cancelled:
                    base._timer_cancelled_count -= 1
                    heappop(timers)[1]._scheduled = False
            if ready or base._stopping:
                timeout = 0
            elif timers:
                timeout = min(max(0, timers[0][0] - self.now), MAXIMUM_SELECT_TIMEOUT)
            else:
                raise Hang("no task can run and no timer is set")
            self.now += max(0.0, timeout)  # what the selector's wait does
            end_time = self.now + base._clock_resolution
            while timers:
                if timers[0][0] >= end_time:
                    break
                handle = heappop(timers)[1]
                handle._scheduled = False
                ready.append(handle)
            for _ in range(len(ready)):
                handle = ready.popleft()
                if handle._cancelled:
                    continue
                try:  # Handle._run's steps, inlined
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _report(handle, exc)
            if base._stopping or base._debug:
                return  # run_forever's check after each iteration (and asyncio's own code in debug mode)


def _report(handle: Any, exc: BaseException) -> None:
    """What Handle._run does with a callback's exception (outside debug mode)."""
    callback = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {callback}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


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
