"""The landing page's rate sampler wakes once per sample, not once a second (idle cost)."""

from __future__ import annotations

import asyncio

import pytest

from core.status import Status
from streams.web.history import SAMPLE_EVERY_SECONDS, History


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_it_sleeps_until_the_next_sample_is_due() -> None:
    clock = Clock(1_000.0)
    history = History(Status(replica_id="r"), clock)  # first sample at 1,000 s
    assert history.seconds_to_next_sample() == SAMPLE_EVERY_SECONDS
    clock.now = 1_004.0
    assert history.seconds_to_next_sample() == pytest.approx(6.0)
    clock.now = 1_030.0  # late (a busy loop): sample at once, but never a zero sleep that would spin
    assert history.seconds_to_next_sample() == pytest.approx(0.1)
    clock.now = 400.0  # the wall clock was set back: sleep one interval, not ten minutes
    assert history.seconds_to_next_sample() == SAMPLE_EVERY_SECONDS


async def test_one_wake_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(0.0)
    status = Status(replica_id="r")
    history = History(status, clock)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 6:
            raise asyncio.CancelledError
        clock.now += seconds
        status.records_folded += 100

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await history.run()
    assert slept[:6] == [SAMPLE_EVERY_SECONDS] * 6
    # Every wake took a sample: 10 records/s over each whole interval.
    assert [round(r, 6) for _, _, r in history.rates(clock.now)] == [10.0] * 6
