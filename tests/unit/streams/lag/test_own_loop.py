"""The lag probes' own thread and event loop: started, cancelled and waited for from the web server's loop."""

import asyncio
import threading
import time

from streams.lag.own_loop import LoopThread, wait_for


async def test_the_body_runs_on_another_thread_and_loop_and_its_finally_runs_there_on_stop() -> None:
    seen: dict[str, object] = {}

    async def body() -> None:
        seen["thread"], seen["loop"] = threading.get_ident(), asyncio.get_running_loop()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # closing clients awaits on the body's own loop
            seen["closed_on"] = threading.get_ident()

    thread = LoopThread("test-loop")
    thread.start(body)
    while "loop" not in seen:
        await asyncio.sleep(0.01)
    assert thread.running
    assert seen["thread"] != threading.get_ident() and seen["loop"] is not asyncio.get_running_loop()
    assert await thread.stop(2.0) is True
    assert seen["closed_on"] == seen["thread"] and not thread.running


async def test_a_blocked_body_does_not_stall_this_loop() -> None:
    async def body() -> None:
        while True:  # a decode of thousands of partitions: CPU in Python, no await
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass
            await asyncio.sleep(0)

    thread = LoopThread("test-busy")
    thread.start(body)
    worst, until = 0.0, time.monotonic() + 1.0
    while time.monotonic() < until:
        asked = time.monotonic()
        await asyncio.sleep(0.005)
        worst = max(worst, time.monotonic() - asked - 0.005)
    assert await thread.stop(2.0) is True
    assert worst < 0.1, worst  # on the same loop each stall would be 0.3 s


async def test_a_body_that_ignores_its_cancel_is_left_behind_within_the_budget() -> None:
    release = threading.Event()

    async def body() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # as a client swallowing a cancel would

    thread = LoopThread("test-stuck")
    thread.start(body)
    started = time.monotonic()
    assert await thread.stop(0.3) is False
    assert time.monotonic() - started < 1.0
    release.set()
    assert await thread.stop(2.0) is True


async def test_stop_before_start_and_a_failing_body() -> None:
    assert await LoopThread("never").stop(0.1) is True

    async def body() -> None:
        raise ValueError("bug")

    thread = LoopThread("test-failing")
    thread.start(body)
    assert await thread.stop(2.0) is True and not thread.running


async def test_a_body_whose_cycles_hold_its_loop_still_stops() -> None:
    async def cycle() -> None:  # a decode with no await: the cancel sent meanwhile lands as it finishes
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            pass

    async def body() -> None:
        while True:
            await wait_for(cycle(), 5.0)  # asyncio.wait_for (3.11) would swallow every such cancel

    thread = LoopThread("test-held")
    thread.start(body)
    await asyncio.sleep(0.3)
    assert await thread.stop(2.0) is True
