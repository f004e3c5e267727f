"""Consumption and production rates over a sliding window of probe cycles, and the time to catch up.

A group's rate is how far its committed offsets advanced per second between the newest sample and the
newest one at least STREAMS_LAG_RATE_WINDOW_SECONDS older (or the oldest kept, while the sidecar has
run less than a window). Consumers commit in steps (every auto-commit interval, every checkpoint), so
the window should span several of their commits; a shorter one makes the rate jump between 0 and peaks.

Memory stays flat whatever the window: a kept sample holds one sum per (group, topic), not every
committed offset, and samples closer than a twentieth of the window to the one before are replaced
rather than added, so at most 23 are kept (the baseline is then up to 5 % older than a window).
After a gap in probing (the exporter lease lost, Kafka down: a pause between two cycles longer than two
windows and than ten times the shortest pause seen) the samples before it are dropped: a rate averaged
over the gap would hide that the group stopped consuming in it. A window shorter than a cycle (tests)
is no gap: each rate is then one cycle's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

Offsets = Mapping[TopicPartition, int]
_SPACING = 20  # kept samples per window, at most (plus the newest and the baseline)
_GAP_STEPS = 10  # a pause this many times the shortest seen between cycles (and over 2 windows) is a gap


@dataclass(frozen=True)
class Sample:
    at_s: float
    committed: Mapping[str, Offsets]  # group -> committed offset per partition
    ends: Offsets  # partition -> end (LSO or HW)


@dataclass(frozen=True)
class _Kept:
    at_s: float
    # (group, topic) -> (sum of the committed offsets, partitions committed): a topic whose count
    # changed (a partition's first commit, or offsets deleted) gives no rate rather than a jump.
    consumed: dict[tuple[str, str], tuple[int, int]]
    ends: dict[TopicPartition, int]


def advance(before: Offsets, after: Offsets, partitions: Iterable[TopicPartition]) -> int | None:
    """Offsets gained on the partitions present at both ends; None when none is. A commit moved back
    (an offset reset) gains nothing rather than cancelling other partitions' progress."""
    common = [tp for tp in partitions if tp in before and tp in after]
    if not common:
        return None
    return sum(max(0, after[tp] - before[tp]) for tp in common)


def catch_up_seconds(lag_messages: int, rate_per_s: float | None, cap_s: float) -> float | None:
    """Lag over the consumption rate: 0 when nothing waits, +Inf when messages wait and the group does
    not consume, at most `cap_s` otherwise; None while the rate is not known yet."""
    if lag_messages <= 0:
        return 0.0
    if rate_per_s is None:
        return None
    if rate_per_s <= 0:
        return math.inf
    return min(cap_s, lag_messages / rate_per_s)


def _compact(sample: Sample) -> _Kept:
    sums: dict[tuple[str, str], tuple[int, int]] = {}
    for group, offsets in sample.committed.items():
        for tp, offset in offsets.items():
            total, count = sums.get((group, tp.topic), (0, 0))
            sums[(group, tp.topic)] = (total + offset, count + 1)
    return _Kept(sample.at_s, sums, dict(sample.ends))


class RateWindow:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: list[_Kept] = []
        self._min_step = math.inf  # the shortest time between two cycles seen: a cycle's usual pace

    def add(self, sample: Sample) -> None:
        kept = [s for s in self._samples if s.at_s < sample.at_s]
        if kept:
            step = sample.at_s - kept[-1].at_s
            if step > max(2 * self.window_s, _GAP_STEPS * self._min_step):
                kept = []  # the probe stopped for a while: see the module's doc
            self._min_step = min(self._min_step, step)
        if len(kept) >= 2 and sample.at_s - kept[-2].at_s < self.window_s / _SPACING:
            kept.pop()  # the newest so far was only there to be the newest
        kept.append(_compact(sample))
        # Keep the newest sample at least a window old (the baseline) and everything after it.
        old = [i for i, s in enumerate(kept) if s.at_s <= sample.at_s - self.window_s]
        if old:
            kept = kept[old[-1] :]
        self._samples = kept

    def _ends(self) -> tuple[_Kept, _Kept] | None:
        if len(self._samples) < 2:
            return None
        return self._samples[0], self._samples[-1]

    def consumed_per_s(self, group: str, partitions: Iterable[TopicPartition]) -> float | None:
        ends = self._ends()
        if ends is None:
            return None
        base, last = ends
        gained, known = 0, False
        for topic in {tp.topic for tp in partitions}:
            before, after = base.consumed.get((group, topic)), last.consumed.get((group, topic))
            if before is None or after is None or before[1] != after[1]:
                continue
            gained, known = gained + max(0, after[0] - before[0]), True
        return gained / (last.at_s - base.at_s) if known else None

    def produced_per_s(self, partition: TopicPartition) -> float | None:
        ends = self._ends()
        if ends is None:
            return None
        base, last = ends
        gained = advance(base.ends, last.ends, [partition])
        return None if gained is None else gained / (last.at_s - base.at_s)
