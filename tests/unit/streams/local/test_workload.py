"""The benchmark's workload options: every `ts` format read back by the sidecar's own parser lands on the
truth's day, late events come at the share asked for and interleaved, and the defaults did not move."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from core.calendar import DayCalendar
from core.decode import raw_tuple
from core.events import parse_ts_ms
from streams.local.timestamps import EPOCH_MS, EPOCH_S, ISO, TS_FORMATS, format_ts, previous_day_ms, ts_ms_of
from streams.local.workload import Truth, build

NOW_MS = 1_759_838_400_000  # 2025-10-07T12:00:00Z
TODAY = date(2025, 10, 7).toordinal()
FUTURE_MS = 86_400_000
UTC_DAYS = DayCalendar(ZoneInfo("UTC"))


def sidecar_day(payload: bytes) -> int:
    """The local day the sidecar files an event under: its decode, then its calendar."""
    ts_ms = raw_tuple(payload, NOW_MS, FUTURE_MS, 65_536)[6]
    return date.fromisoformat(UTC_DAYS.day_of(ts_ms)).toordinal()


def test_each_format_is_written_as_producers_write_it() -> None:
    ts_ms = 1_759_838_400_123
    assert format_ts(ts_ms, EPOCH_MS) == ts_ms
    assert format_ts(ts_ms, EPOCH_S) == 1_759_838_400.123
    assert format_ts(ts_ms, ISO) == "2025-10-07T12:00:00Z"  # the gateway's, whole seconds
    with pytest.raises(ValueError, match="unknown ts format"):
        format_ts(ts_ms, "rfc2822")


@pytest.mark.parametrize("ts_format", TS_FORMATS)
@pytest.mark.parametrize(
    "ts_ms",
    [
        NOW_MS,
        NOW_MS - 43_200_000,  # today's midnight, exactly
        NOW_MS - 43_200_001,  # the last millisecond of yesterday
        NOW_MS - 43_200_000 - 86_400_000,  # yesterday's midnight
        NOW_MS + 43_199_999,  # the last millisecond of today
    ],
)
def test_a_time_reads_back_as_the_sidecar_reads_it(ts_format: str, ts_ms: int) -> None:
    written = format_ts(ts_ms, ts_format)
    through_json = orjson.loads(orjson.dumps({"ts": written}))["ts"]
    ours, sidecars = ts_ms_of(through_json), parse_ts_ms(through_json, NOW_MS, FUTURE_MS)
    assert ours == sidecars
    # ISO text carries whole seconds; the day never changes for it, as midnights fall on whole seconds.
    assert ours == (ts_ms // 1000 * 1000 if ts_format == ISO else ts_ms)


def test_text_without_an_offset_is_utc_as_the_contract_says() -> None:
    assert ts_ms_of("2025-10-07T12:00:00") == ts_ms_of("2025-10-07T12:00:00Z") == NOW_MS
    assert ts_ms_of("2025-10-07T14:00:00+02:00") == NOW_MS
    with pytest.raises(TypeError):
        ts_ms_of(True)


@pytest.mark.parametrize("ts_format", TS_FORMATS)
def test_every_event_of_a_format_is_on_the_truths_day_for_the_sidecar(ts_format: str) -> None:
    raws, enriched, truth = build(
        5, 3_000, 1, orgs=50, users=900, home_org=True, ts_format=ts_format, late_fraction=0.2, now_ms=NOW_MS
    )
    assert truth.today == TODAY
    for payload in raws + enriched:
        event = orjson.loads(payload)
        assert sidecar_day(payload) == truth.day(event), event
    kinds = {type(orjson.loads(p)["ts"]) for p in raws}
    assert kinds == {{EPOCH_MS: int, EPOCH_S: float, ISO: str}[ts_format]}
    if ts_format == ISO:
        assert all(re.fullmatch(rb'.*"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".*', p) for p in raws)
    # The truth holds both days, each with its own tokens.
    assert {day for day, _, _ in truth.tokens} == {TODAY, TODAY - 1}


@pytest.mark.parametrize("late_fraction", [0.1, 0.15, 0.2])
def test_late_events_come_at_the_share_asked_for_and_interleaved(late_fraction: float) -> None:
    raws, _, truth = build(9, 20_000, 10**9, orgs=300, users=30_000, late_fraction=late_fraction, now_ms=NOW_MS)
    late = [truth.day(orjson.loads(p)) == TODAY - 1 for p in raws]
    assert abs(sum(late) / len(late) - late_fraction) < 0.01
    assert all(day in (TODAY, TODAY - 1) for day in (truth.day(orjson.loads(p)) for p in raws))
    # Interleaved, not a block: every tenth of the stream holds late events near the share.
    tenth = len(late) // 10
    assert all(abs(sum(late[i : i + tenth]) / tenth - late_fraction) < 0.03 for i in range(0, len(late), tenth))


def test_without_options_the_workload_is_as_before() -> None:
    raws, _, truth = build(1, 500, 1, now_ms=NOW_MS)
    assert truth.today == 0  # every event is today's, as the tests and the headline benchmark expect
    ts = [orjson.loads(p)["ts"] for p in raws]
    assert all(type(t) is int and NOW_MS - 60_000 < t <= NOW_MS for t in ts)
    assert build(1, 500, 1, now_ms=NOW_MS)[0] == raws  # a seed and a now give the same bytes


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Australia/Lord_Howe"])
def test_a_late_instant_is_on_the_local_day_before(zone: str) -> None:
    tz = ZoneInfo(zone)
    rng = random.Random(3)
    # 2025-11-02 is a 25-hour day in New York; Lord Howe moves by half an hour in April and October.
    for now in (NOW_MS, int(datetime(2025, 11, 3, 9, tzinfo=UTC).timestamp() * 1000)):
        today = datetime.fromtimestamp(now / 1000, tz).date().toordinal()
        days = {datetime.fromtimestamp(previous_day_ms(rng, now, tz) / 1000, tz).date().toordinal() for _ in range(500)}
        assert days == {today - 1}


def test_the_truth_reads_any_format_of_the_same_instant_alike() -> None:
    truth = Truth()
    assert len({truth.day({"ts": format_ts(NOW_MS, f)}) for f in TS_FORMATS}) == 1
