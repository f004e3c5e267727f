"""An asyncio event loop on virtual time: sleeps and timeouts take no wall-clock time, and runs repeat.

When nothing is ready, the loop jumps its clock to the next timer instead of waiting. When nothing is
ready and no timer is set, every task waits for something that can never come: that is a hang, and the
loop says so instead of blocking.
"""

from __future__ import annotations

import asyncio
import selectors
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
