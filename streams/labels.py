"""Bounded label sets: at most N label values get their own series, the rest fold into "__other__".

Membership is sticky: a value admitted once keeps its series, so counters stay monotonic. While a set
has room, the most active candidates are admitted first. Sums over all series stay exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TypeVar

OTHER = "__other__"
N = TypeVar("N", int, float)


def admit(members: set[str], activity: Mapping[str, float], cap: int) -> list[str]:
    """Values to add to `members`: the most active outsiders, up to the cap."""
    room = cap - len(members)
    if room <= 0:
        return []
    outsiders = [v for v in activity if v not in members]
    outsiders.sort(key=lambda v: (-activity[v], v))
    return outsiders[:room]


def activity_of(values: Mapping[tuple[str, str], int], position: int) -> dict[str, int]:
    """Total per label value at `position` (0 or 1) of a two-label family."""
    totals: Counter[str] = Counter()
    for key, n in values.items():
        totals[key[position]] += n
    return dict(totals)


def fold_pairs(values: Mapping[tuple[str, str], N], first: set[str], second: set[str]) -> dict[tuple[str, str], N]:
    folded: dict[tuple[str, str], N] = {}
    for (a, b), n in values.items():
        key = (a if a in first else OTHER, b if b in second else OTHER)
        folded[key] = folded.get(key, 0) + n
    return folded


def fold_single(values: Mapping[str, N], allowed: set[str]) -> dict[str, N]:
    folded: dict[str, N] = {}
    for a, n in values.items():
        key = a if a in allowed else OTHER
        folded[key] = folded.get(key, 0) + n
    return folded


def outside(values: Iterable[str], allowed: set[str]) -> int:
    return len({v for v in values if v not in allowed})
