"""Consumption and production rates over a sliding window of probe cycles, and the time to catch up.

A group's rate is how far its committed offsets advanced per second between the newest sample and the
newest one at least STREAMS_LAG_RATE_WINDOW_SECONDS older (or the oldest kept, while the sidecar has
run less than a window). Consumers commit in steps (every auto-commit interval, every checkpoint), so
the window should span several of their commits; a shorter one makes the rate jump between 0 and peaks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

Offsets = Mapping[TopicPartition, int]


@dataclass(frozen=True)
class Sample:
    at_s: float
    committed: Mapping[str, Offsets]  # group -> committed offset per partition
    ends: Offsets  # partition -> end (LSO or HW)


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


class RateWindow:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        self._samples = [s for s in self._samples if s.at_s < sample.at_s]
        self._samples.append(sample)
        # Keep the newest sample at least a window old (the baseline) and everything after it.
        old = [i for i, s in enumerate(self._samples) if s.at_s <= sample.at_s - self.window_s]
        if old:
            self._samples = self._samples[old[-1] :]

    def _ends(self) -> tuple[Sample, Sample] | None:
        if len(self._samples) < 2:
            return None
        return self._samples[0], self._samples[-1]

    def consumed_per_s(self, group: str, partitions: Iterable[TopicPartition]) -> float | None:
        ends = self._ends()
        if ends is None or group not in ends[0].committed or group not in ends[1].committed:
            return None
        base, last = ends
        gained = advance(base.committed[group], last.committed[group], partitions)
        return None if gained is None else gained / (last.at_s - base.at_s)

    def produced_per_s(self, partition: TopicPartition) -> float | None:
        ends = self._ends()
        if ends is None:
            return None
        base, last = ends
        gained = advance(base.ends, last.ends, [partition])
        return None if gained is None else gained / (last.at_s - base.at_s)
