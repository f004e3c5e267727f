from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.fold import FoldContext, delay_bucket, fold_enriched, fold_raw
from core.calendar import DayCalendar
from streams.local.workload import raw_event
from tables.delta import NANO, Delta, pair, unpair
from tests.unit.tables.delta_summary import delta_summary

H = 3_600_000
NOV27_UTC = 1_795_737_600_000  # 2026-11-27T00:00:00Z


class Rec(NamedTuple):
    value: bytes | None
    timestamp: int
    offset: int = 0
    partition: int = 0


ev = raw_event


def ctx(now_ms: int, zone: str = "UTC", days_kept: int = 2) -> FoldContext:
    return FoldContext(DayCalendar(ZoneInfo(zone)), now_ms, days_kept, 86_400_000, 65536)


@pytest.mark.parametrize(
    ("zone", "ts_ms", "day"),
    [
        ("UTC", NOV27_UTC - 1, "2026-11-26"),
        ("UTC", NOV27_UTC, "2026-11-27"),
        ("Europe/Paris", NOV27_UTC - H - 1, "2026-11-26"),  # 23:59:59.999 in Paris (UTC+1)
        ("Europe/Paris", NOV27_UTC - H, "2026-11-27"),
        ("America/New_York", NOV27_UTC + 4 * H, "2026-11-26"),  # 23:00 the day before (UTC-5)
        ("America/New_York", NOV27_UTC + 5 * H, "2026-11-27"),
        ("Asia/Kolkata", NOV27_UTC - 5 * H - 30 * 60_000, "2026-11-27"),  # UTC+5:30
    ],
)
def test_day_of_follows_the_time_zone(zone: str, ts_ms: int, day: str) -> None:
    assert DayCalendar(ZoneInfo(zone)).day_of(ts_ms) == day


def test_dst_day_has_23_hours() -> None:
    cal = DayCalendar(ZoneInfo("Europe/Paris"))
    import datetime as dt

    start, end = cal.bounds(dt.date(2026, 3, 29))
    assert end - start == 23 * H


def test_midnight_rollover_splits_distinct_sets_by_day() -> None:
    delta = Delta()
    records = [
        Rec(ev("a", "u1", NOV27_UTC - 1000), 1),
        Rec(ev("a", "u1", NOV27_UTC + 1000), 2),
        Rec(ev("b", "u2", NOV27_UTC + 2000), 3),
    ]
    fold_raw(delta, "raw", records, ctx(NOV27_UTC + H))
    assert delta.orgs == {"2026-11-26": {"a"}, "2026-11-27": {"a", "b"}}
    assert delta.users["2026-11-27"] == {pair("a", "u1"), pair("b", "u2")}
    assert delta.ingested[("a", "openai")] == 2
    assert delta.processed["raw"] == 3
    assert delta.last_ts_ms["raw"] == 3


@pytest.mark.parametrize(
    ("days_kept", "age_hours", "late"),
    [(1, 1, 0), (1, 13, 1), (2, 13, 0), (2, 36, 0), (2, 37, 1)],
)
def test_late_events_count_in_their_day_or_as_dropped(days_kept: int, age_hours: int, late: int) -> None:
    now = NOV27_UTC + 12 * H
    delta = Delta()
    fold_raw(delta, "raw", [Rec(ev("a", "u", now - age_hours * H), 0)], ctx(now, days_kept=days_kept))
    assert delta.dropped_late.get("raw", 0) == late
    assert delta.processed["raw"] == 1
    assert sum(len(s) for s in delta.orgs.values()) == 1 - late


def test_invalid_records_are_counted_by_reason_and_do_not_disturb_valid_ones() -> None:
    now = NOV27_UTC + H
    records = [Rec(b"{bad", 0, 10), Rec(ev("a", "u", now), 0, 11), Rec(b"[1]", 0, 12), Rec(b"{bad", 0, 13)]
    delta = Delta()
    fold_raw(delta, "raw", records, ctx(now))
    assert delta.invalid == {pair("raw", "not_json"): 2, pair("raw", "not_object"): 1}
    assert delta.processed["raw"] == 1 and delta.orgs["2026-11-27"] == {"a"}
    assert [(r.record.offset, r.reason) for r in delta.rejections] == [
        (10, "not_json"),
        (12, "not_object"),
        (13, "not_json"),
    ]


def test_enriched_amounts_sum_exactly_in_nano_units() -> None:
    now = NOV27_UTC + H
    values = [0.1, 0.2, 0.3]
    records = [Rec(ev("a", "u", now - 5000, kwh=v, co2_kg=v / 2), now) for v in values]
    delta = Delta()
    fold_enriched(delta, "enriched", records, ctx(now))
    assert delta.kwh_nano["2026-11-27"]["a"] == 600_000_000
    assert delta.co2_nano["2026-11-27"]["a"] == 300_000_000
    assert delta.kwh_nano["2026-11-27"]["a"] / NANO == 0.6
    assert delta.delay_sum_ms == 15_000
    assert delta.delay_buckets[delay_bucket(5000)] == 3


@pytest.mark.parametrize(
    ("delay_ms", "bucket"), [(0, 0), (50, 0), (51, 1), (1000, 4), (10_000, 7), (10_001, 8), (400_000, 11)]
)
def test_delay_buckets(delay_ms: int, bucket: int) -> None:
    assert delay_bucket(delay_ms) == bucket


@pytest.mark.parametrize(("a", "b"), [("org", "user"), ("a:b", "c"), ("", ""), ('\n"', "1:x"), ("5:", ":5")])
def test_pair_round_trips_any_strings(a: str, b: str) -> None:
    assert unpair(pair(a, b)) == (a, b)


_FORMS = {
    "iso": lambda ts_ms: datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    "epoch-s": lambda ts_ms: ts_ms / 1000,
    "epoch-ms": lambda ts_ms: ts_ms,
}


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            # Minutes before now: today and up to four days back, or around the windows' reach (30 days),
            # so that kept or not and in the windows or not come in every combination with days_kept.
            st.one_of(st.integers(0, 4 * 24 * 60 - 1), st.integers(28 * 24 * 60, 34 * 24 * 60)),
            st.sampled_from(sorted(_FORMS)),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 5),
            st.booleans(),  # a record that must be rejected, among the others
        ),
        max_size=40,
    ),
    days_kept=st.sampled_from([1, 2, 3, 31, 33]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
)
def test_a_chunk_folds_as_its_records_one_at_a_time(
    events: list[tuple[int, str, str, int, bool]], days_kept: int, zone: str
) -> None:
    """Late events switch the fold between days (and back, by a swap); one record per chunk never does."""
    now = NOV27_UTC + 13 * H
    records = [
        Rec(
            raw_event(org, f"u{user}", 0, ts=_FORMS[form](now - minutes * 60_000), kwh=0.001 * user, co2_kg=0.5)
            if not bad
            else raw_event(org, f"u{user}", 0, ts="yesterday"),
            now + 1_000,
            offset,
        )
        for offset, (minutes, form, org, user, bad) in enumerate(events)
    ]
    for fold in (fold_raw, fold_enriched):
        whole, one_by_one = Delta(), Delta()
        fold(whole, "t", records, ctx(now, zone, days_kept))
        for rec in records:
            fold(one_by_one, "t", [rec], ctx(now, zone, days_kept))
        assert delta_summary(whole) == delta_summary(one_by_one)
        assert whole.delay_buckets == one_by_one.delay_buckets and whole.delay_sum_ms == one_by_one.delay_sum_ms
