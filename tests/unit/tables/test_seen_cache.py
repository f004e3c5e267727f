"""The cache of members already written (tables/seen.py) and the payload it trims, on plain data."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from tables.delta import Delta, pair
from tables.keys import Keys
from tables.seen import SeenCache
from tables.store import RedisStore
from tables.writes import OffsetMove

TODAY = "2026-11-28"
TODAY_INDEX = date.fromisoformat(TODAY).toordinal()


def _day(offset: int) -> str:
    return date.fromordinal(TODAY_INDEX + offset).isoformat()


class _NoClient:
    def register_script(self, lua: str) -> None:
        return None


@pytest.mark.parametrize(
    ("days_kept", "day_offset", "learnt"),
    [
        (2, 0, True),  # today
        (2, -1, True),  # yesterday: its keys live 3 days after the write that taught it
        (2, -2, False),  # its keys may expire before it leaves the cache
        (1, -1, False),  # one day kept: keys live 2 days, so only today is safe
        (1, 0, True),
        (2, 1, False),  # a future day's keys may have been written long before it began
    ],
)
def test_which_days_are_learnt(days_kept: int, day_offset: int, learnt: bool) -> None:
    cache = SeenCache(100, days_kept)
    day = _day(day_offset)
    cache.learn(TODAY_INDEX, {day: {"u1"}}, {day: {"o1"}})
    assert ("u1" in cache.users(day)) is learnt
    assert ("o1" in cache.orgs(day)) is learnt
    assert cache.size == (2 if learnt else 0)


def test_midnight_drops_the_day_that_left_the_range() -> None:
    cache = SeenCache(100, days_kept=2)
    cache.learn(TODAY_INDEX, {_day(0): {"a", "b"}, _day(-1): {"c"}}, {})
    assert cache.size == 3
    cache.prune(TODAY_INDEX + 1)  # today is yesterday now, yesterday is out
    assert cache.users(_day(-1)) == frozenset() and cache.users(_day(0)) == {"a", "b"}
    assert cache.size == 2


@pytest.mark.parametrize(("max_entries", "kept"), [(0, 0), (3, 3), (5, 5), (10, 5)])
def test_the_cache_stops_learning_when_full(max_entries: int, kept: int) -> None:
    cache = SeenCache(max_entries)
    cache.learn(TODAY_INDEX, {TODAY: {"u1", "u2", "u3"}}, {TODAY: {"o1", "o2"}})
    assert cache.size == kept == len(cache.users(TODAY)) + len(cache.orgs(TODAY))
    cache.learn(TODAY_INDEX, {TODAY: {"u1", "u2", "u3"}}, {})  # known ones take no room
    assert cache.size == kept


def _raw_delta(users: dict[str, list[str]]) -> Delta:
    """A folded raw batch of today: org -> its users."""
    delta = Delta(today_index=TODAY_INDEX)
    delta.processed["raw"] = sum(len(u) for u in users.values())
    delta.orgs[TODAY] = set(users)
    delta.users[TODAY] = {pair(org, user) for org, found in users.items() for user in found}
    delta.ingested.update({(org, "p"): len(found) for org, found in users.items()})
    delta.tokens_in[TODAY] = Counter({org: 1 for org in users})
    return delta


def test_known_members_are_left_out_but_their_keys_still_get_their_expiry() -> None:
    store = RedisStore(_NoClient(), "app", days_kept=2)  # type: ignore[arg-type]
    keys = Keys("app")
    delta = _raw_delta({"o1": ["u1", "u2"], "o2": ["u3"]})
    moves = [OffsetMove("raw", 0, 5, 8)]
    full = store.build_payload(delta, moves)
    cache = SeenCache(100)
    cache.learn(TODAY_INDEX, {TODAY: {pair("o1", "u1"), pair("o2", "u3")}}, {TODAY: {"o1", "o2"}})
    trimmed = store.build_payload(delta, moves, cache)
    users_key = keys.day(TODAY, "users")
    sent = full["usersadd"]
    assert isinstance(sent, list)
    assert [u[2] for u in sent] == [[pair("o1", "u1"), pair("o1", "u2"), pair("o2", "u3")]]
    org_users_key = keys.day(TODAY, "org_users")
    assert trimmed["usersadd"] == [[users_key, org_users_key, [pair("o1", "u2")], [["o1", 1]], TODAY_INDEX]]
    assert trimmed["sadd"] == []  # both orgs known
    assert trimmed["expire"] == full["expire"]
    assert trimmed["hincr"] == full["hincr"] and trimmed["amount"] == full["amount"] and trimmed["off"] == full["off"]
    subjects = trimmed["win"]["subjects"]  # type: ignore[index]
    assert [[e[1] for e in entries] for _, _, entries in subjects] == [[pair("o1", "u2")], []]
