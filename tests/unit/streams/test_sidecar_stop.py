"""The sidecar's stop against a Redis that never answers (a SIGSTOPped redis-server): every step shares
one deadline, so the whole stop ends by it, where each step's own budget used to add up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from core.deadline import LOCAL_CLOSE_S, Deadline
from streams.settings import Settings
from streams.sidecar import Sidecar


class FrozenRedis:
    """Every command, script and close hangs until cancelled, and counts the cancels."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.cancelled: list[str] = []

    def _hang(self, name: str) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise

        return call

    def register_script(self, script: str) -> Callable[..., Any]:
        return self._hang("script")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return self._hang(name)


async def test_every_step_against_a_frozen_redis_ends_by_one_deadline(caplog: pytest.LogCaptureFixture) -> None:
    redis = FrozenRedis()
    sidecar = Sidecar(Settings(), 6066, redis=redis)  # type: ignore[arg-type]
    sidecar.exporter.held = True  # the exporter: the drain renews and the release runs, both against Redis
    loop = asyncio.get_running_loop()
    deadline = Deadline(0.8, loop.time)
    with caplog.at_level(logging.WARNING):
        await sidecar.stop(deadline)
    took_s = deadline.elapsed()
    # The drain (0.8 s less the release's 2 s: nothing), the release, the layout record: each got what was
    # left, not a budget of its own; closing the client's sockets may take LOCAL_CLOSE_S past it.
    assert 0.79 <= took_s <= 0.8 + LOCAL_CLOSE_S + 0.3, took_s  # slack for a loaded machine
    assert sidecar.exporter.draining and not sidecar.status.leader
    assert "releasing the exporter lease did not end within the budget" in caplog.text
    assert "aclose" in redis.calls and "closing redis did not end within the budget" in caplog.text


async def test_a_stop_with_nothing_hanging_takes_no_budget() -> None:
    sidecar = Sidecar(Settings(), 6066, redis=_Answering())  # type: ignore[arg-type]
    deadline = Deadline(5.0, asyncio.get_running_loop().time)
    await sidecar.stop(deadline)
    assert deadline.elapsed() < 0.5


class _Answering:
    def register_script(self, script: str) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            return None

        return run

    async def aclose(self) -> None:
        pass
