"""The simulator's oracle: its own fold of the counted records against what the exporter's read path serves.

It shares nothing with the fold (its imports are held to that), it reads events as the product's decoder
does on every kind of record the contract names, and it sees what the rest of the checker cannot: a fold
bug the checker's fold shares, and a scrape bug, each caught in a schedule the old comparison passes.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

import agents.fold
import agents.tap
import tables.snapshot
import tests.sim.world
from agents.fold import FoldContext
from core.decode import enriched_tuple, raw_tuple
from core.events import Invalid
from tables.delta import Delta, Record
from tables.keys import Keys
from tests.sim.keyspace import Keyspace
from tests.sim.oracle import Folded, exported_day, exported_totals, fold
from tests.sim.oracle_contract import Refused, read_event
from tests.sim.scrape import scrape
from tests.sim.world import PROFILES, first_violation, simulate

NOW_MS = 1_790_000_000_000
FUTURE_MS, MAX_BYTES = 86_400_000, 65_536
ORACLE = [Path(tests.sim.world.__file__).with_name(name) for name in ("oracle.py", "oracle_contract.py")]


def test_the_oracle_imports_nothing_of_the_code_it_checks() -> None:
    imported = set()
    for node in (n for path in ORACLE for n in ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported, "the walk found no import at all"
    product = sorted(m for m in imported if m.split(".")[0] in ("agents", "tables", "core", "streams"))
    assert product == []
    assert sorted(m for m in imported if m.startswith("tests.sim.")) == [
        "tests.sim.kafka",  # type-only: the Entry the checker hands over
        "tests.sim.oracle_contract",
        "tests.sim.scrape",
        "tests.sim.world",  # type-only, and Violation
    ]
    # The read path it compares with is in a module of its own, imported only when comparing.
    assert "tests.sim.scrape" in imported


BASE = {"org_id": "o", "user_id": "u", "provider": "p", "model": "m", "tokens_in": 1, "tokens_out": 2, "ts": NOW_MS}
RAW_CHANGES: list[dict[str, object]] = [
    {},
    {"org_id": None},
    {"user_id": ""},
    {"provider": 7},
    {"model": "m" * 257},
    {"tokens_in": -1},
    {"tokens_in": 1.0},
    {"tokens_out": True},
    {"tokens_out": 10_000_000_001},
    {"ts": "2026-09-21T12:00:00Z"},
    {"ts": "2026-09-21T12:00:00.123+02:00"},
    {"ts": "2026-09-21 12:00:00"},
    {"ts": "yesterday"},
    {"ts": 1_790_000_000},
    {"ts": 1_790_000_000.5},
    {"ts": 946_684_799_999},
    {"ts": NOW_MS + FUTURE_MS + 1},
    {"ts": True},
    {"ts": [1]},
]
ENRICHED_CHANGES: list[dict[str, object]] = [
    {"kwh": 0.5, "co2_kg": 0.25},
    {"kwh": 1000, "co2_kg": 0},
    {"kwh": -0.1, "co2_kg": 0.0},
    {"kwh": 1000.5, "co2_kg": 0.0},
    {"kwh": "1", "co2_kg": 0.0},
    {"co2_kg": 0.0},
    {"kwh": 0.0, "co2_kg": None},
    {"kwh": 0.0, "co2_kg": 0.0, "event_id": "e1", "extra": {"any": [1]}},
]
CASES: list[tuple[bytes | None, bool]] = [
    (None, False),
    (b'{"org_id": 3, "broken', False),
    (b"\xff\xfe", False),
    (b"[1, 2]", False),
    (b"x" * (MAX_BYTES + 1), False),
    (b'{"org_id": "o", "ts": NaN}', False),
    *((orjson.dumps({**BASE, **change}), False) for change in RAW_CHANGES),
    *((orjson.dumps({**BASE, **change}), True) for change in ENRICHED_CHANGES),
]


@pytest.mark.parametrize(("value", "enriched"), CASES)
def test_the_oracle_reads_each_record_as_the_contract_does(value: bytes | None, enriched: bool) -> None:
    """Held to the product's decoder on every reason the contract names: the oracle's rules are its own
    reading of docs/design.md, and where the two disagree one of them is wrong."""
    product: Callable[..., object] = enriched_tuple if enriched else raw_tuple
    try:
        found = product(value, NOW_MS, FUTURE_MS, MAX_BYTES)
        want: object = found if enriched else (found, 0.0, 0.0)
    except Invalid as exc:
        want = exc.reason
    try:
        e = read_event(value, enriched, NOW_MS, FUTURE_MS, MAX_BYTES)
        have: object = ((e.org, e.user, e.provider, e.model, e.tokens_in, e.tokens_out, e.ts_ms), e.kwh, e.co2_kg)
    except Refused as exc:
        have = exc.reason
    assert have == want


def test_the_oracle_counts_by_the_definitions() -> None:
    zone = ZoneInfo("Europe/Berlin")
    today = date(2026, 3, 30)  # the day after the 23-hour day

    def ms(back: int, hour: int = 12) -> int:
        return int(datetime.combine(today - timedelta(days=back), time(hour), zone).timestamp() * 1000)

    def raw(org: str, user: str, back: int, **more: object) -> bytes:
        return orjson.dumps({**BASE, "org_id": org, "user_id": user, "ts": ms(back), **more})

    folded_today, folded_yesterday = ms(0, 23), ms(1, 23)
    records = [
        Folded("raw", 5, raw("a", "u1", 0), folded_today),
        Folded("raw", 9, raw("a", "u1", 1), folded_today),  # yesterday's: kept
        Folded("raw", 7, raw("b", "u1", 1), folded_yesterday),  # another org's u1
        Folded("raw", 3, raw("a", "u2", 6), folded_today),  # the week's first day, not a day kept
        Folded("raw", 3, raw("c", "u3", 29), folded_today),  # the month's first day
        Folded("raw", 3, raw("c", "u4", 30), folded_today),  # beyond the windows
        Folded("raw", 2, b"{", folded_today),
        Folded("enriched", 4, raw("a", "u1", 0, kwh=0.5, co2_kg=1.25), folded_today),
        Folded("enriched", 4, raw("b", "u1", 2, kwh=1.0, co2_kg=0.0), folded_today),
    ]
    truth = fold(records, "raw", zone, 2, (FUTURE_MS, MAX_BYTES))
    totals = exported_totals(truth, today)
    assert totals["processed"] == {"raw": 6, "enriched": 2}
    assert totals["invalid"] == {("raw", "not_json"): 1}
    assert totals["dropped_late"] == {"raw": 3, "enriched": 1}
    assert totals["dropped_late_windows"] == {"raw": 1}
    assert totals["last_ts_ms"] == {"raw": 9, "enriched": 4}
    assert totals["ingested"] == {("a", "p"): 3, ("b", "p"): 1, ("c", "p"): 2}
    assert (totals["weekly_active_users"], totals["monthly_active_users"]) == (3, 4)
    assert (totals["weekly_active_orgs"], totals["monthly_active_orgs"]) == (2, 3)
    figures = exported_day(truth, today)
    assert (figures["active_orgs"], figures["active_users"]) == (1, 1)
    assert figures["tokens"] == {("__other__", "in"): 0, ("__other__", "out"): 0, ("a", "in"): 1, ("a", "out"): 2}
    assert figures["kwh"] == {"__other__": 0.0, "a": 0.5}
    assert figures["model_co2_kg"] == {("__other__", "__other__"): 0.0, ("p", "m"): 1.25}
    yesterday = exported_day(truth, date(2026, 3, 29))
    assert yesterday["org_active_users"] == {"__other__": 0, "a": 1, "b": 1}
    assert yesterday["kwh"] == {"__other__": 0.0}


def test_a_scrape_of_empty_tables_exports_zero_and_the_other_series() -> None:
    snap = scrape(Keyspace(lambda: NOW_MS / 1000), Keys("sim"), "2026-09-21", "raw")
    assert (snap.active_users, snap.monthly_active_users, snap.processed) == (0, 0, {})
    assert snap.kwh == {"__other__": 0.0}
    assert snap.tokens == {("__other__", "in"): 0, ("__other__", "out"): 0}


def test_the_scrape_answers_the_read_script_as_the_script_run_in_lua_does(monkeypatch: pytest.MonkeyPatch) -> None:
    worlds: list[tests.sim.world.World] = []
    monkeypatch.setattr(tests.sim.world, "check_oracle", lambda world, *args: worlds.append(world))
    for seed in range(6):  # noon and boundary schedules, each profile
        simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
    read = 0
    for world in worlds:
        today = datetime.fromtimestamp(world.now_s(), ZoneInfo(world.settings.timezone)).date()
        for day in (today, today - timedelta(days=1)):
            args = (world.redis.keyspace, world.store.keys, day.isoformat(), "raw")
            snap = scrape(*args, lua=True)
            assert snap == scrape(*args)
            read += snap.monthly_active_users + sum(snap.processed.values())
    assert read > 100


# Mutants the old comparison cannot see: it folds the truth with the same fold (the first two), and it
# never reads what a scrape reads (the third).
def _counts_invalid_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # Wrapped where the tap and the old comparison call the fold: a compiled fold (core/compiled.py) calls
    # its own helpers directly, so patching one inside agents.fold would not reach them.
    def counting(fold: Callable[..., None]) -> Callable[..., None]:
        def mutant(delta: Delta, topic: str, records: Sequence[Record], ctx: FoldContext, partition: int = -1) -> None:
            refused = len(delta.rejections)
            fold(delta, topic, records, ctx, partition)
            if len(delta.rejections) > refused:
                delta.processed[topic] += len(delta.rejections) - refused

        return mutant

    for module in (agents.tap, tests.sim.world):
        monkeypatch.setattr(module, "fold_raw", counting(agents.fold.fold_raw))
        monkeypatch.setattr(module, "fold_enriched", counting(agents.fold.fold_enriched))


def _windows_reach_29_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.fold, "WINDOW_DAYS", 29)


def _scrape_counts_a_pair_ending_today(monkeypatch: pytest.MonkeyPatch) -> None:
    def active(pairs: dict[int, dict[str, str]], today: int, days: int) -> int:
        window = range(today - days + 1, today + 1)
        return sum(int(n) for day in window for b, n in pairs.get(day, {}).items() if int(b) >= today)

    monkeypatch.setattr(tables.snapshot, "active_in_window", active)


@pytest.mark.parametrize(
    ("mutate", "shows"),
    [
        (_counts_invalid_records, "processed"),
        (_windows_reach_29_days, "dropped_late_windows"),
        (_scrape_counts_a_pair_ending_today, "active_"),
    ],
)
def test_the_oracle_sees_what_the_old_comparison_does_not(
    mutate: Callable[[pytest.MonkeyPatch], None], shows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate(monkeypatch)
    found = first_violation(range(40))
    assert found is not None, "the oracle missed the mutant in 40 schedules"
    seed, message = found
    assert "the export differs from the oracle's own fold" in message and shows in message
    # The same schedule with only the old checks: the write checks, the tables against the fold, the days.
    monkeypatch.setattr(tests.sim.world, "check_oracle", lambda *args: None)
    simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
