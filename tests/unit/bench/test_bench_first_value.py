"""The first-value section's arithmetic, table and verdict (bench/first_value.py), and its rows."""

from __future__ import annotations

import math

import pytest

from bench.first_value import (
    FOLDING_SCRAPE_INTERVAL_S,
    SCRAPE_INTERVAL_S,
    FirstValue,
    Progress,
    _problems,
    _scrape_interval_s,
    table,
    verdict,
)
from bench.runners import Topics
from bench.workload_rows import FIRST_VALUE_ROWS, ROWS, SMOKE_ROWS, select
from streams.local.workload import Truth

ISO_4, EPOCH_MS_16 = select("iso-4")[0], select("epoch-ms-16")[0]


def _folded(first_s: float, done_s: float, total: int = 1_000_000) -> Progress:
    return Progress(total, first=(first_s, 0), done_s=done_s)


def _row(ratio: float, row: object = ISO_4) -> FirstValue:
    # 1,000,000 events in 10 s to the first exact value: 100,000 events/s, against a ceiling of 100,000 / ratio;
    # folded from 1.5 s to 8.166 s, 150,000 events/s.
    return FirstValue(row, 1_000_000, _folded(1.5, 1.5 + 1 / 0.15), 2.5, 10.0, 100_000 / ratio)  # type: ignore[arg-type]


def test_events_per_second_are_measured_to_the_first_exact_value() -> None:
    r = _row(0.5)
    assert r.events_per_s_to_exact == 100_000
    assert r.ratio == pytest.approx(0.5)


def test_a_row_never_exact_scores_nothing() -> None:
    r = FirstValue(ISO_4, 1_000, Progress(1_000), math.inf, math.inf, 100_000, note="WRONG: never")
    assert r.events_per_s_to_exact == 0 and r.ratio == 0
    assert "| too fast to tell | never → never | never | never | 0 | 100,000 | 0% | WRONG: never |" in table([r])


def test_the_table_has_a_line_per_row_with_both_times() -> None:
    lines = table([_row(0.5), _row(0.8, EPOCH_MS_16)]).splitlines()
    assert len(lines) == 4
    assert lines[2] == (
        "| iso-4: ts as ISO-8601 text, 15% late, 4 partitions | 1,000,000 | 150,000 | 1.5 → 8.2 | 10.0 | 7.5 | "
        "100,000 | 200,000 | 50% |  |"
    )
    assert lines[3].startswith("| epoch-ms-16: ts as epoch-ms integers, 15% late, 16 partitions |")


def test_the_goal_must_hold_in_every_row() -> None:
    assert verdict([_row(0.61), _row(0.9, EPOCH_MS_16)]).endswith(
        "iso-4: 61%, epoch-ms-16: 90%; ≥ 60% met in every row (lowest 61%)."
    )
    assert "MISSED in at least one row (lowest 59%)" in verdict([_row(0.9), _row(0.59, EPOCH_MS_16)])
    assert "MISSED" in verdict([])


def test_the_fold_rate_runs_from_the_first_batch_seen_to_the_last() -> None:
    p = Progress(total=1_000)
    for at_s, folded in [(0.5, 0), (1.0, 200), (2.0, 600), (3.0, 1_000), (3.5, 1_000)]:
        p.note(at_s, folded)
    assert p.first == (1.0, 200) and p.done_s == 3.0
    assert p.events_per_s == 400  # 800 events in 2 s
    quick = Progress(total=1_000)
    quick.note(1.0, 1_000)
    assert quick.events_per_s == 0  # all of it between two reads
    assert "| too fast to tell | 1.0 → 1.0 |" in table([FirstValue(ISO_4, 1_000, quick, 1.0, 2.0, 10_000)])


def test_a_scrape_short_of_events_is_not_exact_without_the_full_comparison() -> None:
    t = Topics("b", "raw", "enriched", 10)
    scrape = {("ecomind_streams_events_processed_total", frozenset({("topic", "raw")})): 9.0}
    assert _problems(scrape, t, Truth()) == ["processed 9 of 10"]
    assert _problems({}, t, Truth()) == ["processed 0 of 10"]


def test_rows_are_chosen_by_name_in_their_order() -> None:
    assert [r.key for r in ROWS] == ["iso-4", "iso-16", "epoch-s-4", "epoch-s-16", "epoch-ms-4", "epoch-ms-16"]
    assert select("all") == list(ROWS)
    assert [r.key for r in select("epoch-ms-16, iso-4")] == ["iso-4", "epoch-ms-16"]
    assert [r.key for r in select(",".join(SMOKE_ROWS))] == list(SMOKE_ROWS)
    with pytest.raises(ValueError, match="unknown rows"):
        select("iso-8")
    with pytest.raises(ValueError):
        select("")
    assert {r.partitions for r in ROWS} == {4, 16}
    assert all(0.1 <= r.late_fraction <= 0.2 for r in ROWS)


def test_compressed_rows_are_first_value_rows_only() -> None:
    assert [(r.key, r.compression) for r in select("all", FIRST_VALUE_ROWS) if r.compression] == [
        ("iso-4-lz4", "lz4"),
        ("iso-4-zstd", "zstd"),
    ]
    assert "zstd-compressed" in select("iso-4-zstd", FIRST_VALUE_ROWS)[0].title
    with pytest.raises(ValueError, match="unknown rows"):
        select("iso-4-lz4")  # the instruction gate's rows: its corpus is the fold's input, never compressed


@pytest.mark.parametrize(
    ("answered", "settled", "interval_s"),
    [
        (False, False, SCRAPE_INTERVAL_S),  # the first answer is timed to the poll
        (False, True, SCRAPE_INTERVAL_S),
        (True, False, FOLDING_SCRAPE_INTERVAL_S),  # folding: no value can be exact yet
        (True, True, SCRAPE_INTERVAL_S),  # every event in the tables, or none moving: check at once
    ],
)
def test_scrapes_are_sparse_only_while_the_tables_still_move(answered: bool, settled: bool, interval_s: float) -> None:
    assert _scrape_interval_s(answered, settled) == interval_s
    assert SCRAPE_INTERVAL_S < FOLDING_SCRAPE_INTERVAL_S <= 15.0  # never sparser than a Prometheus default
