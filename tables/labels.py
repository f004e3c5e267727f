"""Bounded label sets: at most N label values get their own series, the rest fold into "__other__".

Membership is sticky: a value admitted once keeps its series, so counters stay monotonic. Values are
admitted first come, first served, by the state write that first carries them (tables/store.py), and a
value spelled like the fold bucket never gets a series of its own. Sums over all series stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping

OTHER = "__other__"


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
    """Labelled amounts plus "__other__", present even at 0: right after midnight a today-gauge has no
    labelled series yet, and `sum()` over it must read 0, not "no data"."""
    out = dict(labelled)
    out[OTHER] = max(0, total - sum(labelled.values()))
    return out
