"""Per-process facts the landing page shows and the Status does not keep: when the process started,
when it last wrote a batch, and the records it read per second over the last hour.

The rate comes from a small in-process ring buffer of `Status.records_folded` samples, not from the
tables: every replica can draw it (only the exporter reads the tables), sampling costs no Redis
request, and the fleet-wide rate is already in Prometheus as `ecomind_streams_events_processed_total`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from itertools import pairwise

from core.status import Status

SAMPLE_EVERY_SECONDS = 10.0
WINDOW_SECONDS = 3600.0
# The sampler sleeps until the next sample is due (one wake per sample, not one a second), at least this
# long so that a wake a hair early does not spin, and at most one interval so a wall clock set back
# cannot put it to sleep for longer.
_MIN_SLEEP_SECONDS = 0.1
_MIN_LIVE_INTERVAL_SECONDS = 1.0  # a shorter tail interval would make a noisy rate


class History:
    def __init__(self, status: Status, clock: Callable[[], float] = time.time) -> None:
        self.status = status
        self._clock = clock
        self.started_at_s = clock()
        # (time, records folded so far); one more than the window holds so the oldest interval is whole.
        self._samples: deque[tuple[float, int]] = deque(maxlen=int(WINDOW_SECONDS / SAMPLE_EVERY_SECONDS) + 1)
        self.tick()

    def tick(self) -> None:
        now = self._clock()
        if not self._samples or now - self._samples[-1][0] >= SAMPLE_EVERY_SECONDS:
            self._samples.append((now, self.status.records_folded))

    @property
    def last_batch_at_s(self) -> float | None:
        return self.status.last_batch_at_s  # the tap's, written when Redis acknowledges a batch

    def seconds_to_next_sample(self) -> float:
        due = self._samples[-1][0] + SAMPLE_EVERY_SECONDS
        return min(SAMPLE_EVERY_SECONDS, max(_MIN_SLEEP_SECONDS, due - self._clock()))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds_to_next_sample())
            self.tick()

    def _points(self, now_s: float) -> list[tuple[float, int]]:
        points = [p for p in self._samples if p[0] >= now_s - WINDOW_SECONDS - SAMPLE_EVERY_SECONDS]
        if not points or now_s - points[-1][0] >= _MIN_LIVE_INTERVAL_SECONDS:
            points.append((now_s, self.status.records_folded))
        return points

    def rates(self, now_s: float) -> list[tuple[float, float, float]]:
        """(start, end, records per second) of each interval of the last hour, oldest first."""
        out = []
        for (t0, n0), (t1, n1) in pairwise(self._points(now_s)):
            if t1 > t0:
                out.append((t0, t1, max(0, n1 - n0) / (t1 - t0)))
        return out

    def records_in_window(self, now_s: float) -> int:
        """Records read between the oldest sample still in the window and now."""
        points = self._points(now_s)
        return max(0, self.status.records_folded - points[0][1])
