"""One shutdown deadline shared by every step: each gets what is left, a step that hangs (or swallows its
cancel) is abandoned at the deadline, and a failing step does not stop the ones after it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.deadline import Deadline

log = logging.getLogger(__name__)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_step_gets_what_is_left_less_what_later_steps_keep() -> None:
    clock = _Clock()
    deadline = Deadline(20.0, clock)
    assert deadline.left() == 20.0
    clock.now += 7.5
    assert deadline.left() == 12.5 and deadline.elapsed() == 7.5
    assert deadline.left(reserve_s=2.0) == 10.5
    clock.now += 11.0
    assert deadline.left(reserve_s=2.0) == 0.0, "never negative: the step is skipped"
    assert deadline.left() == 1.5 and not deadline.passed
    clock.now += 1.5
    assert deadline.passed


@pytest.mark.parametrize(("budget_s", "want_s"), [(20.0, 2.0), (4.0, 1.0), (1.0, 0.25)])
def test_a_reserve_never_takes_more_than_a_quarter_of_the_budget(budget_s: float, want_s: float) -> None:
    assert Deadline(budget_s, _Clock()).reserve(2.0) == want_s


async def _swallows_its_cancel(ended: list[str]) -> None:
    # What Python 3.11's asyncio.wait_for can do: the cancel is taken for the inner awaitable's.
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(10)
    ended.append("never")


async def test_steps_in_sequence_end_by_one_deadline_even_when_they_hang_or_swallow_a_cancel() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(0.3, loop.time)
    ended: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.1)
        ended.append("quick")

    assert await deadline.within(quick(), "quick", log) is True
    assert await deadline.within(_swallows_its_cancel(ended), "stubborn", log) is False
    at_deadline = deadline.elapsed()
    assert 0.29 <= at_deadline < 0.55, at_deadline
    # Nothing left: the next step is cancelled before it runs, not given a budget of its own.
    assert await deadline.within(quick(), "late", log) is False
    assert deadline.elapsed() - at_deadline < 0.1
    assert ended == ["quick"]


async def test_a_reserve_leaves_the_next_step_its_share() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(0.4, loop.time)
    assert await deadline.within(asyncio.sleep(10), "hung write", log, reserve_s=0.15) is False
    assert 0.24 <= deadline.elapsed() < 0.45
    assert await deadline.within(asyncio.sleep(0.1), "close", log) is True


async def test_a_failing_step_is_logged_not_raised_and_a_floor_runs_a_local_close_past_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(0.05, loop.time)

    async def fails() -> None:
        raise ConnectionError("broker gone")

    with caplog.at_level(logging.WARNING):
        assert await deadline.within(fails(), "closing the consumer", log) is False
    assert "shutdown: closing the consumer failed: broker gone" in caplog.text
    await asyncio.sleep(0.06)
    assert deadline.passed
    closed: list[bool] = []

    async def close() -> None:
        await asyncio.sleep(0.01)
        closed.append(True)

    assert await deadline.within(close(), "closing redis", log, floor_s=0.5) is True
    assert closed == [True]
