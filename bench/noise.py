"""How steady this machine's CPU is during a run: a fixed piece of pure-Python work timed back to back.

On a shared virtual machine the same work takes several times its median now and then (the host's
other tenants); a p99 target of a few tens of milliseconds is only as steady as this. Printed with every
benchmark so that its tails can be read against it.
"""

from __future__ import annotations

import time

WORK_ITERATIONS = 200_000


def _work() -> int:
    total = 0
    for i in range(WORK_ITERATIONS):
        total += i * i
    return total


def cpu_noise(seconds: float = 10.0) -> str:
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        _work()
        times.append(time.monotonic() - started)
    times.sort()
    median, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    slow = sum(1 for t in times if t > 2 * median)
    return (
        f"Machine steadiness: the same pure-Python work timed {len(times)} times over {seconds:.0f} s took "
        f"median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({p99 / median:.1f}x the median; "
        f"{slow} times over 2x)."
    )
