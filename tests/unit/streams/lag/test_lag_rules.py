"""The lag rules as tables: lag from committed offset, log start, LSO/HW and first unconsumed record."""

import re

import pytest
from aiokafka import TopicPartition

from streams.lag.fetch import plan_rounds, resolve_covered
from streams.lag.model import (
    First,
    FirstRecord,
    PartitionLag,
    Reached,
    partition_end,
    partition_lag,
    select_groups,
    slo_seconds,
    topic_lag,
)

END, UNKNOWN = Reached.END, Reached.UNKNOWN
NOW = 10_000


@pytest.mark.parametrize(
    ("committed", "log_start", "end", "first", "messages", "seconds", "has_commit"),
    [
        (10, 0, 10, END, 0, 0.0, True),  # caught up
        (7, 0, 10, FirstRecord(7, 7000), 3, 3.0, True),
        (9, 0, 10, END, 0, 0.0, True),  # 9 is a commit marker: no "lag stuck at 1"
        (3, 0, 10, FirstRecord(7, 4000), 3, 6.0, True),  # 3-6 markers/aborted: counted from the record at 7
        (7, 0, 10, UNKNOWN, 3, None, True),  # age not read in time: unknown, never 0
        (10, 0, 10, UNKNOWN, 0, 0.0, True),  # nothing waits: 0 s is exact, not a guess
        (None, 0, 10, FirstRecord(0, 9000), 10, 1.0, False),  # no commit: everything from the log start
        (None, 4, 4, END, 0, 0.0, False),
        (None, 4, 9, UNKNOWN, 5, None, False),
        (2, 5, 10, FirstRecord(5, 6000), 5, 4.0, True),  # commit below the log start (retention)
        (15, 0, 10, END, 0, 0.0, True),  # commit past the end (topic recreated): never negative
        (15, 0, 10, UNKNOWN, 0, 0.0, True),
        (7, 0, 10, FirstRecord(7, 12_000), 3, 0.0, True),  # producer clock ahead: age clamped at 0
        (7, 0, 7, FirstRecord(7, 9000), 1, 1.0, True),  # a record read beyond an older end still waits
    ],
)
def test_partition_lag(
    committed: int | None,
    log_start: int,
    end: int,
    first: First,
    messages: int,
    seconds: float | None,
    has_commit: bool,
) -> None:
    p = partition_lag("t", 0, committed, log_start, end, first, NOW)
    assert (p.lag_messages, p.lag_seconds, p.committed) == (messages, seconds, has_commit)
    assert p.lag_messages >= 0
    assert p.lag_messages == 0 or p.lag_seconds != 0.0 or isinstance(first, FirstRecord)


@pytest.mark.parametrize(
    ("hw", "lso", "end"),
    [(10, None, 10), (10, -1, 10), (10, 8, 8), (10, 10, 10), (0, 0, 0), (10, 12, 10)],
)
def test_partition_end_is_the_lso_when_known(hw: int, lso: int | None, end: int) -> None:
    assert partition_end(hw, lso) == end


def _p(partition: int, messages: int, seconds: float | None, committed: bool = True) -> PartitionLag:
    return PartitionLag("t", partition, committed, messages, seconds)


@pytest.mark.parametrize(
    ("parts", "messages", "seconds", "committed"),
    [
        ([_p(0, 3, 2.0), _p(1, 5, 9.0)], 8, 9.0, True),
        ([_p(0, 0, 0.0), _p(1, 0, 0.0, False)], 0, 0.0, True),
        ([_p(0, 3, 2.0), _p(1, 5, None)], 8, None, True),  # one unknown age makes the topic's unknown
        ([_p(0, 4, 1.0, False)], 4, 1.0, False),
    ],
)
def test_topic_level_lag(parts: list[PartitionLag], messages: int, seconds: float | None, committed: bool) -> None:
    t = topic_lag("t", parts)
    assert (t.partition, t.lag_messages, t.lag_seconds, t.committed) == (-1, messages, seconds, committed)


@pytest.mark.parametrize(
    ("include", "ignore", "groups", "chosen"),
    [
        ("w", None, ["w", "a", "b"], ["w"]),  # the default: the watched group only
        (".*", None, ["a", "b"], ["a", "b", "w"]),  # the watched group even when not listed
        ("sink-.*", "sink-test.*", ["sink-1", "sink-test-2", "xsink-3"], ["sink-1", "w"]),
        ("a", None, ["ab", "a"], ["a", "w"]),  # full matches only
        ("x", "w", ["w"], ["w"]),  # the watched group cannot be ignored: its series are the design's
    ],
)
def test_group_selection(include: str, ignore: str | None, groups: list[str], chosen: list[str]) -> None:
    assert select_groups(groups, re.compile(include), re.compile(ignore) if ignore else None, "w") == chosen


@pytest.mark.parametrize(
    ("group", "seconds"),
    [("ecomind-worker", 10.0), ("sink-s3", 300.0), ("sink-s3-backfill", 3600.0), ("other", 60.0)],
)
def test_slo_first_full_match_wins(group: str, seconds: float) -> None:
    rules = [(re.compile(p), s) for p, s in (("ecomind-worker", 10.0), ("sink-s3", 300.0), ("sink-.*", 3600.0))]
    assert slo_seconds(group, rules, 60.0) == seconds


A, B = TopicPartition("t", 0), TopicPartition("t", 1)


@pytest.mark.parametrize(
    ("positions", "known", "rounds"),
    [
        ({A: {5}, B: {0}}, set(), [{A: 5, B: 0}]),
        ({A: {5, 2, 9}, B: {0}}, set(), [{A: 2, B: 0}, {A: 5}, {A: 9}]),
        ({A: {5, 2}}, {(A, 2)}, [{A: 5}]),
        ({A: {5}}, {(A, 5)}, [{A: 5}]),  # known, still fetched once for the partition's end
    ],
)
def test_fetch_rounds_one_position_per_partition(
    positions: dict[TopicPartition, set[int]],
    known: set[tuple[TopicPartition, int]],
    rounds: list[dict[TopicPartition, int]],
) -> None:
    assert plan_rounds(positions, known) == rounds


@pytest.mark.parametrize(
    ("first", "ends", "resolved"),
    [
        ({(A, 2): FirstRecord(7, 1)}, {A: 10}, {(A, 5): FirstRecord(7, 1), (A, 7): FirstRecord(7, 1)}),
        ({(A, 2): END}, {A: 10}, {(A, 5): END, (A, 7): END}),  # nothing readable from 2 to the end
        ({(A, 2): FirstRecord(4, 1)}, {A: 10}, {}),  # 5 and 7 lie after the record found: fetch them
        ({}, {A: 5}, {(A, 5): END, (A, 7): END}),  # at or past the end
        ({(A, 2): UNKNOWN}, {}, {}),
    ],
)
def test_positions_answered_without_a_fetch(
    first: dict[tuple[TopicPartition, int], First],
    ends: dict[TopicPartition, int],
    resolved: dict[tuple[TopicPartition, int], First],
) -> None:
    before = dict(first)
    resolve_covered({A: {2, 5, 7}}, first, ends)
    assert {k: v for k, v in first.items() if k not in before} == resolved
