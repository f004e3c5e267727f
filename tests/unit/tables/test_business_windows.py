"""The second set of business metrics on plain data: fold, payload, the windows' bookkeeping, decode."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from streams.local.workload import raw_event
from tables.delta import NANO, Delta, pair, unpair
from tables.keys import NO_NEXT_DAY, ORGS, USERS, WINDOW_DAYS, Keys, active_bucket_of
from tables.labels import OTHER
from tables.script import APPLY_LUA
from tables.seen import SeenCache
from tables.snapshot import active_in_window, decode
from tables.table_reads import RawTables
from tables.windows import users_by_org, window_section
from tests.sim.lua_redis import Keyspace, Scripts

H = 3_600_000
D = 24 * H
NOV27_UTC = 1_795_737_600_000  # 2026-11-27T00:00:00Z
TODAY = date(2026, 11, 27).toordinal()
TOP = chr(0x10FFFF)  # the highest code point: where a run's end cannot be one character up
# Ids' characters around the edges the payload's shortcuts rely on: the pair() separator, digits, the
# highest code point, one below it, and a lone surrogate (which strict UTF-8 refuses to encode).
ORG_CHARS = "ab:1 0" + TOP + chr(0x10FFFE) + "\ud800"


class Rec:
    def __init__(self, value: bytes, offset: int = 0, timestamp: int = NOV27_UTC) -> None:
        self.value, self.offset, self.timestamp, self.partition = value, offset, timestamp, 0


def ctx(now_ms: int, zone: str = "UTC", days_kept: int = 2) -> FoldContext:
    return FoldContext(DayCalendar(ZoneInfo(zone)), now_ms, days_kept, 86_400_000, 65536)


# ---- fold ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age_ms", "days_kept", "kept", "in_windows", "late", "late_windows"),
    [
        (0, 2, True, True, 0, 0),
        (1 * D, 2, True, True, 0, 0),
        (2 * D, 2, False, True, 1, 0),  # beyond the days kept, still in the windows
        (29 * D, 2, False, True, 1, 0),  # the 30th day back: the windows' last day
        (30 * D, 2, False, False, 1, 1),  # the 31st: dropped for the windows too
        (30 * D, 40, True, False, 0, 1),  # kept by the daily tables, yet beyond the windows
        (-20 * H, 2, True, True, 0, 0),  # dated tomorrow (within the allowed future)
    ],
)
def test_fold_raw_puts_each_event_in_the_daily_tables_and_the_windows(
    age_ms: int, days_kept: int, kept: bool, in_windows: bool, late: int, late_windows: int
) -> None:
    now = NOV27_UTC + 12 * H
    delta = Delta()
    fold_raw(
        delta, "raw", [Rec(raw_event("o", "u", now - age_ms, tokens_in=5, tokens_out=7))], ctx(now, days_kept=days_kept)
    )
    day = datetime.fromtimestamp((now - age_ms) / 1000, ZoneInfo("UTC")).date().isoformat()
    assert (day in delta.users) is kept
    assert (day in delta.window_only_users) is (in_windows and not kept)
    assert delta.dropped_late["raw"] == late and delta.dropped_late_windows["raw"] == late_windows
    assert delta.today_index == TODAY
    if kept:
        assert delta.tokens_in[day] == Counter({"o": 5}) and delta.tokens_out[day] == Counter({"o": 7})
    else:
        assert delta.tokens_in == {}
    section: Any = window_section(Keys("app"), delta)
    users = section["subjects"][0][2]
    assert users == ([[users[0][0], pair("o", "u"), [date.fromisoformat(day).toordinal()]]] if in_windows else [])


def test_fold_enriched_sums_energy_by_model_as_the_org_totals() -> None:
    now = NOV27_UTC + 12 * H
    records = [
        Rec(raw_event("a", "u", now, provider="openai", model="gpt", kwh=0.25, co2_kg=0.125)),
        Rec(raw_event("b", "u", now, provider="openai", model="gpt", kwh=0.5, co2_kg=0.0)),
        Rec(raw_event("a", "u", now - 1 * D, provider="google", model="gem", kwh=1e-9, co2_kg=2.0)),
    ]
    delta = Delta()
    fold_enriched(delta, "enriched", records, ctx(now))
    assert delta.model_kwh_nano == {
        "2026-11-27": {("openai", "gpt"): NANO * 3 // 4},
        "2026-11-26": {("google", "gem"): 1},
    }
    for day in delta.kwh_nano:
        assert sum(delta.kwh_nano[day].values()) == sum(delta.model_kwh_nano[day].values())
        assert sum(delta.co2_nano[day].values()) == sum(delta.model_co2_nano[day].values())


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
def test_the_windows_count_local_days_across_dst(zone: str) -> None:
    # 2026-10-25 is Paris's 25-hour day: an event at 23:30 local that day is on the 25th, not the 26th.
    tz = ZoneInfo(zone)
    ts = round(datetime(2026, 10, 25, 23, 30, tzinfo=tz).timestamp() * 1000)
    now = round(datetime(2026, 11, 1, 12, 0, tzinfo=tz).timestamp() * 1000)
    delta = Delta()
    fold_raw(delta, "raw", [Rec(raw_event("o", "u", ts))], ctx(now, zone))
    assert delta.today_index == date(2026, 11, 1).toordinal()
    section: Any = window_section(Keys("app"), delta)
    assert section["subjects"][0][2][0][2] == [date(2026, 10, 25).toordinal()]


# ---- payload ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("members", "runs"),
    [
        ([], []),
        ([pair("a", "1")], [["a", 1]]),
        ([pair("b", "1"), pair("a", "2"), pair("a", "1"), pair("ab", "x")], [["a", 2], ["b", 1], ["ab", 1]]),
        ([pair("a:b", "c"), pair("a", ":bc")], [["a", 1], ["a:b", 1]]),  # colons in ids stay apart
        # An org ending in the highest code point: its run's end is found past that character.
        ([pair(TOP, "1"), pair(TOP, ""), pair(TOP + "a", "")], [[TOP, 2], [TOP + "a", 1]]),
        ([pair("a" + TOP * 2, "x"), pair("b" + TOP * 2, "yz")], [["a" + TOP * 2, 1], ["b" + TOP * 2, 1]]),
        ([pair("", "u"), pair("", "v"), pair("0", "")], [["", 2], ["0", 1]]),  # an empty org
    ],
)
def test_a_days_users_are_grouped_by_org_for_the_per_org_count(members: list[str], runs: list[list[object]]) -> None:
    ordered, found = users_by_org(members)
    assert ordered == sorted(members) and found == runs
    assert sum(n for _, n in found) == len(members)  # type: ignore[misc]


@given(
    st.lists(st.tuples(st.text(max_size=4, alphabet=ORG_CHARS), st.text(max_size=3, alphabet=ORG_CHARS)), max_size=30)
)
def test_runs_match_splitting_every_member(pairs: list[tuple[str, str]]) -> None:
    members = {pair(org, user) for org, user in pairs}
    ordered, found = users_by_org(members)
    naive: list[list[object]] = []
    for org, _ in map(unpair, ordered):
        if naive and naive[-1][0] == org:
            naive[-1][1] += 1  # type: ignore[operator]
        else:
            naive.append([org, 1])
    assert found == naive


def test_window_entries_are_in_their_members_buckets_with_sorted_days() -> None:
    now = NOV27_UTC + 12 * H
    records = [Rec(raw_event(f"o{i % 3}", f"u{i}", now - (i % 4) * D), now) for i in range(40)]
    delta = Delta()
    fold_raw(delta, "raw", records, ctx(now, days_kept=2))
    section = window_section(Keys("app"), delta)
    assert section is not None
    for _, _, entries in section["subjects"]:  # type: ignore[attr-defined]
        assert entries, "both subjects have members"
        for bucket, member, days in entries:
            assert bucket == active_bucket_of(member)
            assert days == sorted(set(days)) and days
    users = {member: days for _, member, days in section["subjects"][0][2]}  # type: ignore[index]
    assert users[pair("o1", "u1")] == [date(2026, 11, 26).toordinal()]
    assert len(users) == 40


_DAY_NAMES = [date.fromordinal(TODAY - back).isoformat() for back in (-1, 0, 1, 2, 29, 30, 31)]
_members = st.builds(pair, st.text(max_size=3, alphabet=ORG_CHARS), st.text(max_size=2, alphabet=ORG_CHARS))
_days = st.dictionaries(st.sampled_from(_DAY_NAMES), st.sets(_members, max_size=8), max_size=4)


@given(_days, _days, _days, _days, _days)
def test_window_entries_match_each_members_days_found_one_by_one(
    users: dict[str, set[str]],
    window_only_users: dict[str, set[str]],
    orgs: dict[str, set[str]],
    window_only_orgs: dict[str, set[str]],
    seen_users: dict[str, set[str]],
) -> None:
    # Days may be both kept and not (folds of two days' contexts), subjects on several days, some
    # already known to the cache: each entry is what a look at every day for that member gives.
    delta = Delta(today_index=TODAY)
    delta.users, delta.window_only_users, delta.orgs, delta.window_only_orgs = (
        users,
        window_only_users,
        orgs,
        window_only_orgs,
    )
    seen = SeenCache(10_000, days_kept=2)
    seen.learn(TODAY, seen_users, seen_users)  # the same members as users and as orgs: both are strings
    section: Any = window_section(Keys("app"), delta, seen)
    # The same from each kept day's new users sorted already, as the payload's usersadd section has them.
    fresh = {day: sorted(members - seen.users(day)) for day, members in users.items()}
    assert window_section(Keys("app"), delta, seen, {day: m for day, m in fresh.items() if m}) == section
    oldest = TODAY - WINDOW_DAYS + 1
    for (_, _, entries), kept, other, known in (
        (section["subjects"][0], users, window_only_users, seen.users),
        (section["subjects"][1], orgs, window_only_orgs, seen.orgs),
    ):
        want: dict[str, set[int]] = {}
        for found, skipped in ((kept, True), (other, False)):
            for day, members in found.items():
                index = date.fromisoformat(day).toordinal()
                for member in (members - known(day) if skipped else members) if index >= oldest else ():
                    want.setdefault(member, set()).add(index)
        expected = [[active_bucket_of(m), m, sorted(days)] for m, days in sorted(want.items())]
        assert entries == expected


def test_an_enriched_only_batch_has_no_windows_section() -> None:
    delta = Delta()
    fold_enriched(delta, "enriched", [Rec(raw_event("a", "u", NOV27_UTC, kwh=1.0, co2_kg=1.0))], ctx(NOV27_UTC))
    assert window_section(Keys("app"), delta) is None


# ---- the windows' bookkeeping (the real script, in Lua over the simulated keyspace) ------------------
def apply_windows(scripts: Scripts, section: dict[str, Any]) -> None:
    """A batch of nothing but its windows section, through the real batch script."""
    payload: dict[str, Any] = {"off": [], "lineage": None, "win": section, "lo": ":lo", "base": 10**9, "other": OTHER}
    payload |= {part: [] for part in ("hincr", "amount", "sadd", "usersadd", "hmax", "expire", "admit")}
    assert scripts.run(APPLY_LUA, ["{app}:offsets"], [orjson.dumps(payload)]) == [1, ""]


def _scripts() -> Scripts:
    return Scripts(Keyspace(lambda: NOV27_UTC / 1000))


def _section(today: int, events: list[tuple[str, int]]) -> dict[str, Any]:
    k = Keys("app")
    found: dict[str, set[int]] = {}
    for member, day in events:
        if day >= today - WINDOW_DAYS + 1:
            found.setdefault(member, set()).add(day)
    entries = [[0, m, sorted(days)] for m, days in sorted(found.items())]
    return {
        "state": k.window_state,
        "subjects": [[k.active_prefix(USERS), k.window_pairs_prefix(USERS), entries]],
        "today": today,
        "horizon": today - WINDOW_DAYS + 1,
        "none": NO_NEXT_DAY,
        "buckets": 4,
        "reach_days": WINDOW_DAYS + 2,
    }


def _pairs(data: dict[str, Any]) -> dict[int, dict[str, str]]:
    prefix = Keys("app").window_pairs_prefix(USERS)
    return {int(key[len(prefix) :]): h for key, h in data.items() if key.startswith(prefix)}


def _truth(events: list[tuple[str, int]], today: int, days: int) -> int:
    return len({m for m, d in events if today - days < d <= today})


@pytest.mark.parametrize("seed", range(40))
def test_window_counts_are_exact_whatever_order_and_batching_events_arrive_in(seed: int) -> None:
    rng = random.Random(seed)
    start = TODAY - 40
    # Writes happen on non-decreasing days; each carries events up to 35 days old or one day ahead.
    scripts = _scripts()
    data = scripts.keyspace.data
    seen: list[tuple[str, int]] = []
    today = start
    for _ in range(rng.randint(1, 30)):
        today += rng.choice([0, 0, 0, 1, 2, 7])
        batch = [(f"u{rng.randrange(8)}", today - rng.randint(-1, 35)) for _ in range(rng.randint(0, 6))]
        apply_windows(scripts, _section(today, batch))
        seen += [(m, d) for m, d in batch if d >= today - WINDOW_DAYS + 1]
        # A scrape on any day from the last write's on (no write in between) reads the exact counts.
        for scrape_day in (today, today + 1, today + 3):
            for days in (7, WINDOW_DAYS):
                want = _truth(seen, scrape_day, days)
                assert active_in_window(_pairs(data), scrape_day, days) == want, (seed, today, scrape_day, days)


def test_the_sweep_forgets_subjects_beyond_the_windows_and_their_return_counts_once() -> None:
    scripts = _scripts()
    data = scripts.keyspace.data
    apply_windows(scripts, _section(TODAY - 40, [("u1", TODAY - 40), ("u2", TODAY - 41)]))
    bucket = Keys("app").active_bucket(USERS, 0)
    assert data[bucket] == {"u1": str(TODAY - 40), "u2": str(TODAY - 41)}
    for _ in range(4):  # one bucket per write: four writes sweep all four
        apply_windows(scripts, _section(TODAY, []))
    assert bucket not in data  # Redis deletes a hash whose last field goes
    apply_windows(scripts, _section(TODAY, [("u1", TODAY)]))
    assert data[bucket] == {"u1": str(TODAY)}
    assert active_in_window(_pairs(data), TODAY, WINDOW_DAYS) == 1


# ---- decode ----------------------------------------------------------------------------------------
def _raw(**changes: object) -> RawTables:
    base: dict[str, object] = dict(
        members={"org_id": ["a"], "provider": ["openai"], "model": ["gpt"]},
        processed={"raw": "10"},
        invalid={},
        dropped_late={},
        last_ts={},
        delay={},
        delay_remainder={},
        active_orgs=2,
        active_users=5,
        org_fields={"a": {}},
        kwh={"a": ("1", "0")},
        co2={"a": (None, None)},
        totals={"kwh": "3", "tokens_in": "0", "tokens_out": "2"},
        totals_remainder={"kwh": "0", "tokens_in": "1000", "tokens_out": "5"},
        by_provider={"openai": "8"},
        by_model={"gpt": "9"},
        activity_sizes={"org_id": 3, "provider": 2, "model": 3},
        today_index=TODAY,
        window_pairs={
            USERS: {TODAY: {str(NO_NEXT_DAY): "3"}, TODAY - 6: {str(TODAY + 1): "2", str(TODAY): "9"}},
            ORGS: {TODAY - 29: {str(NO_NEXT_DAY): "1"}, TODAY - 30: {str(NO_NEXT_DAY): "4"}},
        },
        dropped_late_windows={"raw": "4"},
        org_users={"a": "3"},
        tokens={"i:a": (None, "600"), "o:a": ("1", "0")},
        provider_energy={"openai": ({"k:gpt": "1", "k:other-model": "0"}, {"k:other-model": "7", "c:gpt": "2"})},
        model_energy={"k:gpt": ("1", "500"), "c:gpt": (None, "2")},
    )
    base.update(changes)
    return RawTables(**base)  # type: ignore[arg-type]


def test_decode_builds_the_second_set_with_exact_other_buckets() -> None:
    snap = decode(_raw(), "raw")
    # Users whose pair (a, b) has a in the window and b after today: (today, none) and (today-6, today+1).
    assert (snap.weekly_active_users, snap.monthly_active_users) == (5, 5)
    assert (snap.weekly_active_orgs, snap.monthly_active_orgs) == (0, 1)
    assert snap.org_active_users == {"a": 3, OTHER: 2}
    assert sum(snap.org_active_users.values()) == snap.active_users
    assert snap.tokens == {("a", "in"): 600, (OTHER, "in"): 400, ("a", "out"): NANO, (OTHER, "out"): NANO + 5}
    kwh = {key: round(v * NANO) for key, v in snap.model_kwh.items()}
    assert kwh == {("openai", "gpt"): NANO, ("openai", OTHER): 7, (OTHER, "gpt"): 500, (OTHER, OTHER): 2 * NANO - 507}
    assert round(sum(snap.model_kwh.values()) * NANO) == 3 * NANO == round(sum(snap.kwh.values()) * NANO)
    assert snap.model_co2_kg == {("openai", "gpt"): 2 / NANO, (OTHER, OTHER): 0.0}
    assert snap.dropped_late_windows == {"raw": 4}


def test_decode_right_after_midnight_reads_zero_not_no_data() -> None:
    empty = _raw(totals={}, totals_remainder={}, org_users={"a": None}, tokens={}, provider_energy={}, model_energy={})
    snap = decode(empty, "raw")
    assert snap.tokens == {(OTHER, "in"): 0, (OTHER, "out"): 0}
    assert snap.model_kwh == {(OTHER, OTHER): 0.0} and snap.model_co2_kg == {(OTHER, OTHER): 0.0}
