"""The simulator across local midnight and DST changes, and its fake consumer's refusals.

The boundaries are what they claim (23- and 25-hour days, a midnight DST skips); the checker's own day
rule is zoneinfo's local date; and the search finds a calendar that assigns days wrongly, and a tap that
keeps its revoked partitions, within the schedules CI runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from core.calendar import DayCalendar
from tests.sim.calendar_oracle import BOUNDARIES, Clock, clock_for, expected_days, fold_instants
from tests.sim.kafka import Entry, SimConsumer
from tests.sim.oracle_contract import local_day
from tests.sim.world import PROFILES, Violation, World, first_violation, simulate

BUDGET = 400  # schedules, as CI runs them; each mutant below is found far sooner (docs/guarantees.md)


def _hours(zone: str, day: date) -> float:
    z = ZoneInfo(zone)
    start = datetime.combine(day, time(0), z).timestamp()
    return (datetime.combine(day + timedelta(days=1), time(0), z).timestamp() - start) / 3600


def test_the_boundaries_are_the_days_they_name() -> None:
    lengths = {}
    for b in BOUNDARIES:
        at = b.instant_s()
        before, after = (local_day(int(at * 1000) + d, ZoneInfo(b.zone)) for d in (-1, 0))
        if "midnight" in b.name:
            assert after == before + timedelta(days=1), b.name
        else:  # a DST change within a day
            assert after == before, b.name
            assert (
                datetime.fromtimestamp(at - 1, ZoneInfo(b.zone)).utcoffset()
                != datetime.fromtimestamp(at, ZoneInfo(b.zone)).utcoffset()
            )
        lengths[(b.zone, before)] = _hours(b.zone, before)
    assert sorted(set(lengths.values())) == [23.0, 24.0, 25.0]
    # Santiago's clocks skip 00:00 on 2026-09-06: that day starts at 01:00 and lasts 23 hours.
    assert _hours("America/Santiago", date(2026, 9, 6)) == 23.0
    assert datetime.fromtimestamp(BOUNDARIES[5].instant_s(), ZoneInfo("America/Santiago")).hour == 1


def test_half_the_schedules_start_seconds_before_a_boundary() -> None:
    clocks = [clock_for(seed) for seed in range(400)]
    near = [c for c in clocks if c.boundary_s is not None]
    assert 150 < len(near) < 250
    assert all(0.5 <= c.boundary_s - c.start_s <= 8.0 for c in near if c.boundary_s is not None)
    assert {c.zone for c in near} == {b.zone for b in BOUNDARIES}


def test_a_batch_folded_before_midnight_may_be_written_after_it() -> None:
    midnight = BOUNDARIES[0].instant_s()  # Berlin, 2026-03-30 00:00
    clock = Clock("Europe/Berlin", midnight - 2.0, midnight)
    instants = fold_instants(clock, int((midnight + 1.0) * 1000))
    assert instants == [int((midnight + 1.0) * 1000), int(midnight * 1000) - 1]
    assert fold_instants(clock, int((midnight - 1.0) * 1000)) == [int((midnight - 1.0) * 1000)]


def test_the_checker_dates_events_by_their_local_day() -> None:
    midnight_ms = int(BOUNDARIES[0].instant_s() * 1000)  # 22:00 UTC, midnight in Berlin

    def entry(ts: int, **fields: object) -> Entry:
        body = {"org_id": "o", "user_id": "u", "provider": "p", "model": "m", "ts": ts, **fields}
        return Entry(0, orjson.dumps(body), ts)

    entries = [
        entry(midnight_ms - 1, tokens_in=1, tokens_out=2),
        entry(midnight_ms, tokens_in=10, tokens_out=20),
        entry(midnight_ms, kwh=0.5, co2_kg=0.25),
        Entry(0, b'{"org_id": 3, "broken', midnight_ms),
    ]
    days = {date(2026, 3, 29), date(2026, 3, 30)}
    want = expected_days(entries, days, ZoneInfo("Europe/Berlin"))
    assert want[("tokens", "2026-03-29", "i:o")] == 1
    assert want[("tokens", "2026-03-30", "i:o")] == 10
    assert want[("tokens", "2026-03-30", "o:o")] == 20
    assert want[("kwh", "2026-03-30", "o")] == 500_000_000
    assert want[("users", "2026-03-30")] == {"1:ou"}
    # In UTC both are still the 29th: that is the mutant the search must see.
    utc = expected_days(entries, days, ZoneInfo("UTC"))
    assert utc[("tokens", "2026-03-29", "i:o")] == 11
    assert not [k for k in utc if k[1] == "2026-03-30"]


def _first_violation(budget: int = BUDGET) -> str | None:
    found = first_violation(range(budget))
    return None if found is None else found[1]


def _utc(self: DayCalendar, zone: ZoneInfo, original: Callable[..., None] = DayCalendar.__init__) -> None:
    original(self, ZoneInfo("UTC"))


def _days_of_24_hours(self: DayCalendar, day: date) -> tuple[int, int]:
    start = self._midnight_ms(day)
    return start, start + 86_400_000


def _end_inclusive(self: DayCalendar, ts_ms: int) -> str:
    start_ms, end_ms, name = self._last
    if start_ms <= ts_ms <= end_ms:
        return name
    local = datetime.fromtimestamp(ts_ms / 1000, self.zone).date()
    self._last = (*self.bounds(local), local.isoformat())
    return self._last[2]


def _midnight_at_noons_offset(self: DayCalendar, day: date) -> int:
    offset = datetime.combine(day, time(12), self.zone).utcoffset() or timedelta(0)
    return round((datetime.combine(day, time(0), ZoneInfo("UTC")) - offset).timestamp() * 1000)


CALENDAR_MUTANTS = {
    "utc-instead-of-the-zone": ("__init__", _utc),
    "midnight-at-the-noons-offset": ("_midnight_ms", _midnight_at_noons_offset),
    "days-of-24-hours": ("bounds", _days_of_24_hours),
    "next-midnight-in-the-day": ("day_of", _end_inclusive),
}


@pytest.mark.parametrize("mutant", sorted(CALENDAR_MUTANTS))
def test_the_search_finds_a_wrong_day_assignment(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tap and the checker's fold share core/calendar.py: only the checker's own rule can see it."""
    name, replacement = CALENDAR_MUTANTS[mutant]
    monkeypatch.setattr(DayCalendar, name, replacement)
    found = _first_violation()
    assert found is not None, f"{mutant} went unnoticed in {BUDGET} schedules"


def test_the_checker_sees_a_day_written_to_the_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the checker's fold on the wrong calendar too, the rest of the checker agrees with the tap: the
    schedules around Berlin's boundaries fail on the per-day figures alone (some have nothing left in
    the hours UTC and Berlin disagree on, after Redis restarted empty)."""
    monkeypatch.setattr(DayCalendar, "__init__", _utc)
    seeds = [s for s in range(60) if clock_for(s).zone == "Europe/Berlin"]
    failures = []
    for seed in seeds:
        try:
            simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
        except Violation as exc:
            failures.append(str(exc))
    assert len(failures) >= len(seeds) * 2 // 3, (len(failures), len(seeds))
    assert all("per-day figures" in f for f in failures)


def test_the_fake_consumer_refuses_what_aiokafka_refuses() -> None:
    world = World(0)
    c = SimConsumer(world, 0)
    c.assigned = {TopicPartition("raw", 0)}
    c.seek(TopicPartition("raw", 0), 3)
    assert c.positions[TopicPartition("raw", 0)] == 3
    for call in (
        lambda: c.seek(TopicPartition("raw", 1), 0),
        lambda: c.pause(TopicPartition("raw", 1)),
        lambda: c.resume(TopicPartition("raw", 1)),
    ):
        world.violation = None
        with pytest.raises(IllegalStateError):
            call()
        assert isinstance(world.violation, Violation)
    with pytest.raises(ValueError):
        c.seek(TopicPartition("raw", 0), -1)


def test_the_search_finds_a_tap_that_keeps_revoked_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """on_revoked that drains and commits but keeps what it owned: a later reload or resync seeks a
    partition aiokafka no longer assigns, which it refuses."""
    from agents.rebalance import Rebalance

    async def keeps_them(self: Rebalance, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self._drain()
            await self._commit(force=True)

    monkeypatch.setattr(Rebalance, "on_revoked", keeps_them)
    found = _first_violation()
    assert found is not None, f"revoked partitions kept went unnoticed in {BUDGET} schedules"
    assert "not assigned" in found
