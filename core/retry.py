"""One retry policy for every loop that waits out a failing dependency: exponential backoff, capped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    first_seconds: float = 0.2
    max_seconds: float = 5.0
    factor: float = 2.0

    def delays(self) -> DelayIterator:
        return DelayIterator(self)


class DelayIterator:
    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self.next_seconds = policy.first_seconds

    def __iter__(self) -> DelayIterator:
        return self

    def __next__(self) -> float:
        delay = self.next_seconds
        self.next_seconds = min(delay * self.policy.factor, self.policy.max_seconds)
        return delay


STATE_WRITES = Backoff(0.2, 5.0)
SERVICES = Backoff(1.0, 30.0)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    retry_on: tuple[type[BaseException], ...],
    *,
    what: str,
    log: logging.Logger,
    policy: Backoff = STATE_WRITES,
    on_error: Callable[[BaseException], None] | None = None,
    attempts: int | None = None,
    sleep: Sleep = asyncio.sleep,
    healthy_after_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `attempt` until it succeeds; errors in `retry_on` are logged and retried, others raise.

    With `attempts`, the last error is raised after that many tries. With `healthy_after_s`, an attempt
    that ran that long before failing starts the back-off over: a service that failed a few times at
    start and then ran for hours waits the first delay after its next failure, not the longest one.
    """
    delays = policy.delays()
    tried = 0
    while True:
        started = clock()
        try:
            return await attempt()
        except retry_on as exc:
            if healthy_after_s is not None and clock() - started >= healthy_after_s:
                delays = policy.delays()
            tried += 1
            if on_error is not None:
                on_error(exc)
            if attempts is not None and tried >= attempts:
                raise
            delay = next(delays)
            log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
            await sleep(delay)
