"""The simulator's virtual-time loop (tests/sim/loop.py) schedules as asyncio's own code does: the same
callbacks, in the same order, at the same virtual instants, so that a seed replays the same schedule. Its
lean scheduling runs outside debug mode; in debug mode asyncio's own code runs, and the two must agree."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.sim.loop import Hang, VirtualTimeLoop


def _workload(seed: int, debug: bool) -> list[tuple[str, float]]:
    log: list[tuple[str, float]] = []

    async def worker(name: str, rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        for step in range(40):
            # Ties (equal delays, zero delays) and thirds, whose sums round: the order and the float
            # arithmetic of the clock must both be asyncio's.
            await asyncio.sleep(rng.choice([0, 0.0, 0.1, 0.1, 0.25, 1 / 3, 7.0]))
            log.append((f"{name} {step}", loop.time()))
            if rng.random() < 0.25:
                try:
                    await asyncio.wait_for(asyncio.sleep(rng.choice([0.1, 0.5])), timeout=rng.choice([0.1, 0.3]))
                    log.append((f"{name} waited", loop.time()))
                except TimeoutError:
                    log.append((f"{name} timed out", loop.time()))
            if rng.random() < 0.15:
                loop.call_soon(log.append, (f"{name} soon", loop.time()))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # Over a hundred timers, most of them cancelled: asyncio's clean-up of its timer heap runs too.
        far = [loop.call_later(1000.0 + i, log.append, ("far", 0.0)) for i in range(150)]
        for handle in far[:120]:
            handle.cancel()
        rng = random.Random(seed)
        await asyncio.gather(*(worker(f"w{i}", random.Random(rng.random())) for i in range(6)))
        for handle in far[120:]:
            handle.cancel()

    loop = VirtualTimeLoop()
    loop.set_debug(debug)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_lean_scheduling_runs_callbacks_as_asyncio_does(seed: int) -> None:
    lean, own = _workload(seed, debug=False), _workload(seed, debug=True)
    assert len(lean) > 240 and any("timed out" in name for name, _ in lean)
    assert lean == own


@pytest.mark.parametrize("debug", [False, True])
def test_a_loop_where_nothing_can_run_says_it_hangs(debug: bool) -> None:
    loop = VirtualTimeLoop()
    loop.set_debug(debug)
    try:
        with pytest.raises(Hang):
            loop.run_until_complete(asyncio.Event().wait())
    finally:
        loop.close()
