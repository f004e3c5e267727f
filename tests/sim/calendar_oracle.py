"""Virtual time across local midnight and DST changes, and the checker's own rule for the days.

Some schedules run in a zone with DST and start seconds before a local midnight (of a 23- or 25-hour day,
one where the change is at midnight itself, one with a half-hour offset) or before a DST change, with late
events of the previous day among the new day's. The checker then computes today's and yesterday's
per-day figures itself: an event's day is the local date of its `ts` in the zone (zoneinfo, nothing
else), so a day-assignment bug in core/calendar.py or the folds, which the rest of the checker shares
with the code under test, shows here.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from tables.keys import AMOUNT_BASE, DAY_CO2, DAY_KWH, DAY_ORGS, DAY_TOKENS, DAY_USERS, TOKENS_IN, TOKENS_OUT
from tests.sim.oracle_contract import local_day

if TYPE_CHECKING:
    from tests.sim.kafka import Entry
    from tests.sim.world import World

NOON_UTC_S = 1_790_000_000.0  # the default schedules' start: no day bound moves during their run


@dataclass(frozen=True)
class Boundary:
    name: str
    zone: str
    # Naive local wall time of the boundary. A wall time a DST gap skips (fold=0) takes the offset before
    # the change, so it names the change itself; so does the second 02:00 (fold=1) of a change back.
    local: datetime

    def instant_s(self) -> float:
        return self.local.replace(tzinfo=ZoneInfo(self.zone)).timestamp()


BOUNDARIES = (
    Boundary("midnight ending a 23-hour day", "Europe/Berlin", datetime(2026, 3, 30)),
    Boundary("midnight ending a 25-hour day", "Europe/Berlin", datetime(2026, 10, 26)),
    Boundary("midnight starting a 23-hour day", "Europe/Berlin", datetime(2026, 3, 29)),
    Boundary("DST change at 02:00", "Europe/Berlin", datetime(2026, 3, 29, 2)),
    Boundary("DST change back at 03:00", "Europe/Berlin", datetime(2026, 10, 25, 2, fold=1)),
    Boundary("midnight skipped by DST", "America/Santiago", datetime(2026, 9, 6)),
    Boundary("midnight after a 25-hour day", "America/Santiago", datetime(2026, 4, 5)),
    Boundary("midnight, half-hour offset", "Asia/Kolkata", datetime(2026, 12, 8)),
    Boundary("midnight ending a 25-hour day", "America/New_York", datetime(2026, 11, 2)),
)


@dataclass(frozen=True)
class Clock:
    zone: str
    start_s: float
    boundary_s: float | None  # virtual time crosses it; None for the default noon schedules

    @property
    def zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


def clock_for(seed: int) -> Clock:
    """Half the schedules keep the fixed UTC noon; the others start up to 3 s before a boundary (a run
    lasts 1 to 20 virtual seconds, and its healing waits until the boundary has passed)."""
    rng = random.Random(seed ^ 0xDA7E)  # its own stream: the schedules' draws stay as they were
    if rng.random() < 0.5:
        return Clock("UTC", NOON_UTC_S, None)
    b = rng.choice(BOUNDARIES)
    at = b.instant_s()
    return Clock(b.zone, at - rng.uniform(0.5, 8.0), at)


def event_ts(rng: random.Random, clock: Clock, ts_ms: int) -> int:
    """Around a boundary, a third of the events are up to 3 hours late (the previous day's among the new
    day's), and one in twenty is dated at the boundary's very millisecond or the one before it."""
    if clock.boundary_s is None:
        return ts_ms
    roll = rng.random()
    if roll < 0.05:
        return int(clock.boundary_s * 1000) - rng.randint(0, 1)
    if roll < 0.05 + 1 / 3:
        return ts_ms - rng.randint(0, 3 * 3_600_000)
    return ts_ms


def fold_instants(clock: Clock, now_ms: int) -> list[int]:
    """Instants standing for every local date a fold since the start may have taken as today, newest first:
    a batch folded before midnight can be written after it."""
    zone = clock.zone_info
    start_ms = int(clock.start_s * 1000)
    instants, day = [now_ms], local_day(now_ms, zone)
    while day > local_day(start_ms, zone):
        midnight_ms = int(datetime.combine(day, time(0), zone).timestamp() * 1000)
        instants.append(max(start_ms, midnight_ms - 1))
        day = local_day(instants[-1], zone)
    return instants


def expected_days(entries: Iterable[Entry], days: set[date], zone: ZoneInfo) -> dict[tuple[str, ...], Any]:
    """Per local day in `days`: tokens and energy per org, the day's orgs and users, from the raw events.

    Every valid event of these days counts, whatever the fold's today was: the days are today and
    yesterday at the end, and the tables keep both (days_kept >= 2) from the day before on."""
    out: dict[tuple[str, ...], Any] = {}
    sums: Counter[tuple[str, ...]] = Counter()
    for e in entries:
        try:
            event = orjson.loads(e.value or b"")
        except orjson.JSONDecodeError:
            continue  # the simulator's only invalid events are cut-off JSON
        day = local_day(int(event["ts"]), zone)
        if day not in days:
            continue
        name, org = day.isoformat(), event["org_id"]
        if "kwh" in event:
            sums[(DAY_KWH, name, org)] += round(event["kwh"] * 1e9)
            sums[(DAY_CO2, name, org)] += round(event["co2_kg"] * 1e9)
            continue
        sums[(DAY_TOKENS, name, TOKENS_IN + org)] += event["tokens_in"]
        sums[(DAY_TOKENS, name, TOKENS_OUT + org)] += event["tokens_out"]
        out.setdefault((DAY_ORGS, name), set()).add(org)
        out.setdefault((DAY_USERS, name), set()).add(f"{len(org)}:{org}{event['user_id']}")
    out.update({k: v for k, v in sums.items() if v})
    return out


def stored_days(data: dict[str, Any], day_key: Any, days: set[date]) -> dict[tuple[str, ...], Any]:
    """The same figures as they stand in Redis (an amount is its hash field plus the remainder beside it)."""
    out: dict[tuple[str, ...], Any] = {}
    for day in days:
        name = day.isoformat()
        for table in (DAY_KWH, DAY_CO2, DAY_TOKENS):
            key = day_key(name, table)
            whole, rest = data.get(key, {}), data.get(key + ":lo", {})
            for f in set(whole) | set(rest):
                n = int(whole.get(f, 0)) * AMOUNT_BASE + int(rest.get(f, 0))
                if n:
                    out[(table, name, f)] = n
        for table in (DAY_ORGS, DAY_USERS):
            members = data.get(day_key(name, table), set())
            if members:
                out[(table, name)] = set(members)
    return out


def check_days(world: World, counted: Iterable[Entry]) -> None:
    """Today's and yesterday's per-day figures in Redis equal the checker's own computation."""
    from tests.sim.world import Violation

    zone = world.clock.zone_info
    today = local_day(int(world.now_s() * 1000), zone)
    days = {today, today - timedelta(days=1)}
    want = expected_days(counted, days, zone)
    have = stored_days(world.redis.data, world.store.keys.day, days)
    if want != have:
        diff = sorted({k for k in want.keys() | have.keys() if want.get(k) != have.get(k)})
        shown = [(k, want.get(k), have.get(k)) for k in diff[:3]]
        raise Violation(f"per-day figures of {sorted(map(str, days))} in {zone} differ (want, have): {shown}")
