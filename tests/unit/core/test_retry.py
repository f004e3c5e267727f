"""The shared back-off: it grows while the dependency keeps failing, and with `healthy_after_s` starts
over after an attempt that ran that long (a service that ran for hours waits the first delay again)."""

from __future__ import annotations

import logging

import pytest

from core.retry import Backoff, retry

log = logging.getLogger(__name__)


class _Service:
    """Fails after running the given times (virtual seconds), then returns."""

    def __init__(self, runs_s: list[float]) -> None:
        self.runs_s = runs_s
        self.now = 0.0
        self.slept: list[float] = []

    async def attempt(self) -> str:
        if not self.runs_s:
            return "done"
        self.now += self.runs_s.pop(0)
        raise ConnectionError("gone")

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("healthy_after_s", "want"),
    [(None, [1.0, 2.0, 4.0, 8.0, 8.0]), (60.0, [1.0, 2.0, 4.0, 1.0, 2.0])],
    ids=["grows", "starts-over-after-a-healthy-run"],
)
async def test_the_back_off_starts_over_only_after_a_healthy_run(
    healthy_after_s: float | None, want: list[float]
) -> None:
    service = _Service([0.1, 0.1, 0.1, 3600.0, 0.1])  # three quick failures, then an hour of service
    got = await retry(
        service.attempt,
        (ConnectionError,),
        what="service",
        log=log,
        policy=Backoff(1.0, 8.0),
        sleep=service.sleep,
        healthy_after_s=healthy_after_s,
        clock=lambda: service.now,
    )
    assert got == "done"
    assert service.slept == want
