"""Bounded label sets: at most N label values get their own series, the rest fold into "__other__".

Membership is sticky: a value admitted once keeps its series, so counters stay monotonic. While a set
has room, the most active candidates are admitted first. Sums over all series stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping

OTHER = "__other__"


def admit(members: set[str], activity: Mapping[str, float], cap: int) -> list[str]:
    """Values to add to `members`: the most active outsiders, up to the cap."""
    room = cap - len(members)
    if room <= 0:
        return []
    # A value spelled like the fold bucket never gets a series of its own: it would merge with it.
    outsiders = [v for v in activity if v not in members and v != OTHER]
    outsiders.sort(key=lambda v: (-activity[v], v))
    return outsiders[:room]


def cap_pairs(
    per_first: Mapping[str, Mapping[str, int]],
    second_totals: Mapping[str, int],
    grand_total: int,
    allowed_second: set[str],
) -> dict[tuple[str, str], int]:
    """A two-label family with capped values on both labels, from the labelled part and the totals.

    `per_first` holds the labelled first values only; `second_totals` the totals of the labelled second
    values; `grand_total` the family's total. Whatever they do not cover goes to "__other__".
    """
    out: dict[tuple[str, str], int] = {}
    labelled_second: dict[str, int] = {}
    for first, by_second in per_first.items():
        for second, n in by_second.items():
            key = (first, second if second in allowed_second else OTHER)
            out[key] = out.get(key, 0) + n
            if second in allowed_second:
                labelled_second[second] = labelled_second.get(second, 0) + n
    covered = sum(out.values())
    for second, total in second_totals.items():
        rest = total - labelled_second.get(second, 0)
        if rest > 0:
            out[(OTHER, second)] = rest
            covered += rest
    if grand_total > covered:
        out[(OTHER, OTHER)] = grand_total - covered
    return out


def cap_amounts(labelled: Mapping[str, int], total: int) -> dict[str, int]:
    out = dict(labelled)
    rest = total - sum(labelled.values())
    if rest > 0:
        out[OTHER] = rest
    return out
