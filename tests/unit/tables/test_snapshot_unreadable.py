"""A stored value that is not a number costs the scrape its own series only: decoding equals decoding
the tables without that value, the value is counted by table, and nothing raises (a raise was an HTTP 500
for the whole /metrics, lag series included)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pytest

from core.ratelog import RateLimitedLog
from tables import checked
from tables.delta import pair
from tables.keys import NO_NEXT_DAY, ORGS, USERS
from tables.snapshot import decode
from tables.table_reads import RawTables

TODAY = 740_000
BAD = "x1"


def _raw() -> RawTables:
    return RawTables(
        members={"org_id": ["a"], "provider": ["openai"], "model": ["gpt"]},
        processed={"raw": "10", "enriched": "4"},
        invalid={pair("raw", "bad_json"): "2", pair("enriched", "bad_kwh"): "1"},
        dropped_late={"raw": "1"},
        last_ts={"raw": "1795780800000", "enriched": "1795780700000"},
        delay={"b0": "3", "b1": "1", "sum_ms": "0"},
        delay_remainder={"sum_ms": "1500"},
        active_orgs=2,
        active_users=5,
        org_fields={"a": {"p:openai": "6", "m:gpt": "6"}},
        kwh={"a": ("1", "0")},
        co2={"a": (None, "7")},
        totals={"kwh": "3", "co2": "0", "tokens_in": "0", "tokens_out": "2"},
        totals_remainder={"kwh": "0", "co2": "9", "tokens_in": "1000", "tokens_out": "5"},
        by_provider={"openai": "8"},
        by_model={"gpt": "9"},
        activity_sizes={"org_id": 3, "provider": 2, "model": 3},
        today_index=TODAY,
        window_pairs={
            USERS: {TODAY: {str(NO_NEXT_DAY): "3"}, TODAY - 6: {str(TODAY + 1): "2", str(TODAY): "9"}},
            ORGS: {TODAY - 2: {str(NO_NEXT_DAY): "1"}},
        },
        dropped_late_windows={"raw": "4"},
        org_users={"a": "3"},
        tokens={"i:a": (None, "600"), "o:a": ("1", "0")},
        provider_energy={"openai": ({"k:gpt": "1"}, {"k:gpt": "7", "c:gpt": "2"})},
        model_energy={"k:gpt": ("1", "500"), "c:gpt": (None, "2")},
    )


Edit = Callable[[RawTables, Any], object]
# (table counted, how to put a value there, how to leave it out): one per kind of value decode reads.
CASES: list[tuple[str, Edit, Edit]] = [
    ("processed", lambda r, v: r.processed.__setitem__("enriched", v), lambda r, _: r.processed.pop("enriched")),
    (
        "invalid",
        lambda r, v: r.invalid.__setitem__(pair("raw", "bad_json"), v),
        lambda r, _: r.invalid.pop(pair("raw", "bad_json")),
    ),
    ("last_ts", lambda r, v: r.last_ts.__setitem__("raw", v), lambda r, _: r.last_ts.pop("raw")),
    ("delay", lambda r, v: r.delay.__setitem__("b1", v), lambda r, _: r.delay.pop("b1")),
    ("delay", lambda r, v: r.delay_remainder.__setitem__("sum_ms", v), lambda r, _: r.delay_remainder.clear()),
    ("org_fields", lambda r, v: r.org_fields["a"].__setitem__("m:gpt", v), lambda r, _: r.org_fields["a"].pop("m:gpt")),
    ("kwh", lambda r, v: r.kwh.__setitem__("a", ("1", v)), lambda r, _: r.kwh.__setitem__("a", (None, None))),
    ("totals", lambda r, v: r.totals.__setitem__("kwh", v), lambda r, _: r.totals.pop("kwh")),
    ("activity", lambda r, v: r.by_model.__setitem__("gpt", v), lambda r, _: r.by_model.__setitem__("gpt", None)),
    (
        "window_pairs",
        lambda r, v: r.window_pairs[USERS][TODAY - 6].__setitem__(str(TODAY + 1), v),
        lambda r, _: r.window_pairs[USERS][TODAY - 6].pop(str(TODAY + 1)),
    ),
    ("org_users", lambda r, v: r.org_users.__setitem__("a", v), lambda r, _: r.org_users.__setitem__("a", None)),
    (
        "tokens",
        lambda r, v: r.tokens.__setitem__("o:a", (v, "0")),
        lambda r, _: r.tokens.__setitem__("o:a", (None, None)),
    ),
    (
        "provider_energy",
        lambda r, v: r.provider_energy["openai"][1].__setitem__("k:gpt", v),
        lambda r, _: r.provider_energy["openai"][1].pop("k:gpt"),
    ),
    (
        "model_energy",
        lambda r, v: r.model_energy.__setitem__("c:gpt", (None, v)),
        lambda r, _: r.model_energy.__setitem__("c:gpt", (None, None)),
    ),
]


@pytest.mark.parametrize(("table", "put", "leave_out"), CASES)
def test_a_value_that_is_not_a_number_costs_its_own_series_only(
    table: str, put: Edit, leave_out: Edit, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checked, "_warn", RateLimitedLog(checked.log))  # one line per table per 10 s
    bad, without = _raw(), _raw()
    put(bad, BAD)
    leave_out(without, None)
    with caplog.at_level(logging.WARNING, logger="tables.snapshot"):
        got = decode(bad, "raw")
    want = decode(without, "raw")
    assert got.unreadable == {table: 1}
    assert want.unreadable == {}
    assert {**vars(got), "unreadable": {}} == vars(want)
    assert f"scrape: {table} field" in caplog.text and "not a number" in caplog.text


def test_a_label_value_field_that_is_not_a_pair_and_a_day_that_is_not_a_number_are_left_out() -> None:
    raw = _raw()
    raw.invalid["no-length:x"] = "1"
    raw.window_pairs[ORGS][TODAY - 2]["tomorrow"] = "1"
    raw.last_ts["enriched"] = "nan"
    snap = decode(raw, "raw")
    assert snap.unreadable == {"invalid": 1, "window_pairs": 1, "last_ts": 1}
    assert snap.invalid == decode(_raw(), "raw").invalid
    assert snap.last_ts_ms == {"raw": 1_795_780_800_000}
    assert snap.monthly_active_orgs == decode(_raw(), "raw").monthly_active_orgs == 1


def test_clean_tables_decode_as_before() -> None:
    raw = _raw()
    before = copy.deepcopy(raw)
    snap = decode(raw, "raw")
    assert snap.unreadable == {}
    assert raw == before, "decoding never changes what was read"
    assert snap.last_ts_ms == {"raw": 1_795_780_800_000, "enriched": 1_795_780_700_000}
    assert snap.processed == {"raw": 10, "enriched": 4}
