"""Consumer-group lag, in messages and in seconds: the pure rules, with no Kafka client in sight.

The probe (streams/lag/probe.py) gathers, for every (group, partition), the committed offset, the log
start, the partition's end and what a read_committed fetch from the group's position found first. The
functions here turn those into lag; they are tested by tables (tests/unit/streams/lag/test_lag_rules.py).

Rules (docs/lag.md says why):
- The position a group resumes from is its committed offset, or the log start when it has no commit or
  when retention deleted what it committed.
- The end is the last stable offset (LSO) when the broker gives one, else the high watermark: records
  of open transactions are not readable yet, so they are not waiting for the group either.
- A read_committed fetch from the position skips commit markers and aborted records. If it reaches the
  end without a record, nothing waits: lag 0 (the classic "lag stuck at 1" is a commit marker). If its
  first record is at offset F > position, the offsets between are markers or aborted records: the lag
  counts from F.
- The age is now minus the first unconsumed record's timestamp. When that record could not be read
  in time, the age is unknown (None), never 0 while messages wait.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


@dataclass
class Figures:
    """A cycle's retention margins, times to catch up and lost records (computed by streams/lag/outlook.py)."""

    margins: dict[tuple[str, str, int, str], float] = field(default_factory=dict)  # (group, topic, partition, basis)
    catch_up: dict[tuple[str, str], float] = field(default_factory=dict)  # (group, topic)
    # (group, topic, partition) -> offsets retention deleted before the group read them
    lost: dict[tuple[str, str, int], int] = field(default_factory=dict)


class Reached(Enum):
    """What a fetch from a position found when it holds no record."""

    END = "end"  # fetched up to the end: only markers or aborted records (or nothing) after the position
    UNKNOWN = "unknown"  # no answer before the deadline


@dataclass(frozen=True)
class FirstRecord:
    offset: int
    timestamp_ms: int


First = FirstRecord | Reached


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int  # -1 for a topic-level aggregate
    committed: bool
    lag_messages: int
    lag_seconds: float | None  # None: unknown (messages wait but their age could not be read)

    @property
    def seconds_unknown(self) -> bool:
        return self.lag_seconds is None


@dataclass(frozen=True)
class MemberLag:
    """The lag of the partitions one client (client id, host) owns in a group (streams/lag/members.py)."""

    client_id: str
    host: str
    partitions: int
    lag_messages: int
    lag_seconds: float | None  # None: unknown on one of its partitions


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]
    # Topics it has commits on that none of its members owns (streams/lag/scope.py), and how many
    # committed partitions those are, whether STREAMS_LAG_STALE measures them or not.
    stale_topics: frozenset[str] = frozenset()
    stale_partitions: int = 0
    member_lag: tuple[MemberLag, ...] = ()  # with STREAMS_LAG_MEMBERS only
    filtered_commits: int = 0  # committed partitions of topics STREAMS_LAG_TOPICS(_IGNORE) leaves out

    @property
    def committed_partitions(self) -> int:
        """Measured partitions with a commit, plus those of filtered-out topics: a group committing only
        where it is not measured still commits."""
        return sum(1 for p in self.partitions if p.committed) + self.filtered_commits


@dataclass
class LagSnapshot:
    groups: dict[str, GroupLag]
    watched_group: str
    taken_at_s: float
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    phases_s: dict[str, float] = field(default_factory=dict)  # time per step of the cycle, for the benchmark
    outlook: Figures | None = None  # retention margins and times to catch up (streams/lag/outlook.py)

    @property
    def watched(self) -> GroupLag | None:
        return self.groups.get(self.watched_group)


def resume_position(committed: int | None, log_start: int) -> int:
    """Where the group would read next: a commit below the log start points at deleted records."""
    return log_start if committed is None else max(committed, log_start)


def partition_end(high_watermark: int, last_stable: int | None) -> int:
    """The LSO where the broker reports one (read_committed fetch, Kafka >= 0.11), else the HW."""
    if last_stable is None or last_stable < 0:
        return high_watermark
    return min(last_stable, high_watermark)


def partition_lag(
    topic: str,
    partition: int,
    committed: int | None,
    log_start: int,
    end: int,
    first: First,
    now_ms: int,
) -> PartitionLag:
    """Lag of one partition for one group; never negative, never 0 seconds with messages waiting."""
    position = resume_position(committed, log_start)
    has_commit = committed is not None
    if first is Reached.END:
        return PartitionLag(topic, partition, has_commit, 0, 0.0)
    if isinstance(first, FirstRecord):
        # A record was read, so at least one message waits even when `end` came from an older answer.
        messages = max(1, end - max(position, first.offset))
        return PartitionLag(topic, partition, has_commit, messages, max(0.0, (now_ms - first.timestamp_ms) / 1000))
    messages = max(0, end - position)
    return PartitionLag(topic, partition, has_commit, messages, 0.0 if messages == 0 else None)


def topic_lag(topic: str, parts: Iterable[PartitionLag]) -> PartitionLag:
    """One series per (group, topic) for clusters with many partitions: summed messages, oldest age.

    The age is unknown when any partition's is: a known maximum over the others could be younger."""
    parts = list(parts)
    messages = sum(p.lag_messages for p in parts)
    committed = any(p.committed for p in parts)
    if any(p.seconds_unknown for p in parts):
        return PartitionLag(topic, -1, committed, messages, None)
    return PartitionLag(topic, -1, committed, messages, max((p.lag_seconds or 0.0 for p in parts), default=0.0))


def by_topic(parts: Iterable[PartitionLag]) -> list[PartitionLag]:
    grouped: dict[str, list[PartitionLag]] = {}
    for p in parts:
        grouped.setdefault(p.topic, []).append(p)
    return [topic_lag(topic, grouped[topic]) for topic in sorted(grouped)]


def select_groups(
    groups: Iterable[str], include: re.Pattern[str], ignore: re.Pattern[str] | None, watched: str
) -> list[str]:
    """Groups to measure: full matches of `include` minus full matches of `ignore`; the watched group
    always, because the design document's worker series are computed from it."""
    chosen = {g for g in groups if include.fullmatch(g) and not (ignore and ignore.fullmatch(g))}
    chosen.add(watched)
    return sorted(chosen)


def slo_seconds(group: str, rules: Iterable[tuple[re.Pattern[str], float]], default: float) -> float:
    """The group's lag SLO: the first rule whose pattern fully matches, else the default."""
    for pattern, seconds in rules:
        if pattern.fullmatch(group):
            return seconds
    return default
