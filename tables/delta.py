"""What one batch adds to the tables: the type the fold fills and the store writes, and its encodings.

It lives here, below both, so that the store never imports the fold: agents depends on tables, never
the other way round.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

K = TypeVar("K")

# Upper bounds (seconds) of the enrichment-delay histogram; the last bucket is +Inf.
DELAY_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# The same bounds in integer milliseconds: a delay of exactly a bound falls in that bucket (le).
DELAY_BOUNDS_MS = tuple(round(b * 1000) for b in DELAY_BUCKETS_SECONDS)
# Amounts are summed as integers in units of 1e-9 so that totals do not depend on order.
NANO = 1_000_000_000
# A delay beyond this adds only this much to the histogram's sum (it is in the +Inf bucket anyway):
# a producer-chosen record timestamp must not be able to push the sum anywhere it likes.
MAX_DELAY_MS = 86_400_000


class Record(Protocol):
    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def offset(self) -> int: ...


def pair(a: str, b: str) -> str:
    """Unambiguous key for two strings, whatever characters they hold."""
    return f"{len(a)}:{a}{b}"


def unpair(key: str) -> tuple[str, str]:
    size, _, rest = key.partition(":")
    n = int(size)
    return rest[:n], rest[n:]


def add(counts: dict[K, int], key: K, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass
class Rejection:
    topic: str
    reason: str
    record: Record
    # The tap's records carry no partition (aiokafka's C records, agents/bulk_fetch.py): the fold is told it.
    partition: int = -1


@dataclass
class Delta:
    # The per-label sums are plain dicts, added to with `add` (or `get`): a Counter, a dict subclass
    # written in Python, costs about three times as much per `+=` in CPython 3.11, and the fold makes
    # one or two such additions per event (docs/performance.md). The per-topic ones stay Counters.
    # Label pairs are tuples here, not pair() strings: the store reads both halves, and never has to
    # split a string the fold joined.
    ingested: dict[tuple[str, str], int] = field(default_factory=dict)  # (org, provider)
    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (org, model)
    processed: Counter[str] = field(default_factory=Counter)  # topic
    invalid: Counter[str] = field(default_factory=Counter)  # pair(topic, reason)
    dropped_late: Counter[str] = field(default_factory=Counter)  # topic
    last_ts_ms: dict[str, int] = field(default_factory=dict)  # topic -> newest record time
    orgs: dict[str, set[str]] = field(default_factory=dict)  # day -> org ids
    users: dict[str, set[str]] = field(default_factory=dict)  # day -> pair(org, user)
    kwh_nano: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> org -> kWh * 1e9
    co2_nano: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> org -> kg * 1e9
    # The second set of business metrics (docs/business-metrics.md).
    window_only_users: dict[str, set[str]] = field(default_factory=dict)  # day in the windows, not kept
    window_only_orgs: dict[str, set[str]] = field(default_factory=dict)
    dropped_late_windows: Counter[str] = field(default_factory=Counter)  # topic: older than the windows
    today_index: int = 0  # the fold's local today as a date ordinal: the windows' compaction point
    tokens_in: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> org -> tokens
    tokens_out: dict[str, dict[str, int]] = field(default_factory=dict)
    model_kwh_nano: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)  # day -> (provider, model)
    model_co2_nano: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS_SECONDS) + 1))
    delay_sum_ms: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.processed or self.invalid or self.dropped_late or self.last_ts_ms)
