"""RedisStore.apply over the real batch script (tables/script.py, in Lua over the simulated keyspace): what
the seen cache leaves out of a write, how the lineage makes a Redis that lost writes get them in full,
and the refusals read from the script's replies."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from tables.delta import Delta, pair
from tables.store import RedisStore
from tables.writes import Conflict, OffsetMove, PartialWrite
from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts

TODAY = "2026-11-28"
TODAY_INDEX = date.fromisoformat(TODAY).toordinal()
NOW_S = datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()


def _day(offset: int) -> str:
    return date.fromordinal(TODAY_INDEX + offset).isoformat()


class _Redis(Scripts):
    """The real script over a simulated keyspace, each payload it is sent kept."""

    def __init__(self) -> None:
        super().__init__(Keyspace(lambda: NOW_S))
        self.payloads: list[dict[str, Any]] = []

    def register_script(self, source: str) -> Any:
        run = super().register_script(source)

        async def recorded(keys: list[str], args: list[Any]) -> Any:
            self.payloads.append(orjson.loads(args[0]))
            return await run(keys, args)

        return recorded

    def sent_users(self, payload: int = -1) -> list[str]:
        """The users a payload (the last by default) sent, whatever their day."""
        return [member for added in self.payloads[payload]["usersadd"] for member in added[2]]

    def members(self, key: str) -> set[str]:
        return set(self.keyspace.data.get(key, set()))


def _batch(users: list[str], day: str = TODAY, today_index: int = TODAY_INDEX) -> Delta:
    """A raw batch of org o1's users on `day`."""
    delta = Delta(today_index=today_index)
    delta.processed["raw"] = len(users)
    delta.orgs[day] = {"o1"}
    delta.users[day] = {pair("o1", u) for u in users}
    return delta


def _store(redis: _Redis, days_kept: int = 2, cache: int | None = 100) -> RedisStore:
    if cache is None:  # the constructor's default
        return RedisStore(redis, "app", days_kept)  # type: ignore[arg-type]
    return RedisStore(redis, "app", days_kept, seen_cache_entries=cache)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cache", "second_sends", "org_sent"),
    [
        (None, ["u1", "u2"], True),  # no cache unless asked for
        (0, ["u1", "u2"], True),
        (1, ["u2"], True),  # full after u1: o1 is sent again
        (100, ["u2"], False),
    ],
)
async def test_members_written_before_are_left_out_as_far_as_the_cache_holds(
    cache: int | None, second_sends: list[str], org_sent: bool
) -> None:
    redis = _Redis()
    store = _store(redis, cache=cache)
    await store.apply(_batch(["u1"]), [OffsetMove("raw", 0, None, 1)])
    await store.apply(_batch(["u1", "u2"]), [OffsetMove("raw", 0, 1, 2)])
    assert redis.sent_users() == [pair("o1", u) for u in second_sends]
    assert bool(redis.payloads[-1]["sadd"]) is org_sent
    # Left out or not, the day's sets end the same.
    assert redis.members(store.keys.day(TODAY, "users")) == {pair("o1", "u1"), pair("o1", "u2")}
    assert redis.members(store.keys.day(TODAY, "orgs")) == {"o1"}


@pytest.mark.parametrize(("days_kept", "yesterday_sent_again"), [(1, True), (2, False)])
async def test_yesterday_is_left_out_only_when_its_keys_outlive_the_cache(
    days_kept: int, yesterday_sent_again: bool
) -> None:
    # One day kept: yesterday's keys may expire within the day, and the cache must not vouch for them.
    redis = _Redis()
    store = _store(redis, days_kept)
    await store.apply(_batch(["late"], _day(-1)), [OffsetMove("raw", 0, None, 1)])
    await store.apply(_batch(["late"], _day(-1)), [OffsetMove("raw", 0, 1, 2)])
    assert redis.sent_users() == ([pair("o1", "late")] if yesterday_sent_again else [])


async def test_a_day_that_left_the_cached_range_is_sent_in_full_again() -> None:
    redis = _Redis()
    store = _store(redis)
    await store.apply(_batch(["u1"]), [OffsetMove("raw", 0, None, 1)])
    # Two days on, a late event of that day: the cache let the day go before building the write.
    await store.apply(_batch(["u1"], TODAY, TODAY_INDEX + 2), [OffsetMove("raw", 0, 1, 2)])
    assert redis.sent_users() == [pair("o1", "u1")]


async def test_a_redis_back_from_an_older_snapshot_gets_the_batch_in_full() -> None:
    redis = _Redis()
    store = _store(redis)
    await store.apply(_batch(["u1"]), [OffsetMove("raw", 0, None, 1)])
    snapshot = copy.deepcopy((redis.keyspace.data, redis.keyspace.expires_ms))
    await store.apply(_batch(["u2"]), [OffsetMove("raw", 0, 1, 2)])
    redis.keyspace.data, redis.keyspace.expires_ms = snapshot
    # The tap reads offset 1 again and sends the second batch again: u2 is known to the cache, but the
    # snapshot holds the lineage count of the first write, not of the second.
    await store.apply(_batch(["u2"]), [OffsetMove("raw", 0, 1, 2)])
    assert (redis.sent_users(2), redis.sent_users(3)) == ([], [pair("o1", "u2")])
    assert redis.members(store.keys.day(TODAY, "users")) == {pair("o1", "u1"), pair("o1", "u2")}
    assert redis.keyspace.call("HGET", store.keys.offsets, "raw:0") == "2"
    # Sent in full, the write expected no lineage; the next one is trusted again.
    assert redis.payloads[3]["lineage"][1] == ""
    await store.apply(_batch(["u2", "u3"]), [OffsetMove("raw", 0, 2, 3)])
    assert redis.sent_users() == [pair("o1", "u3")]


async def test_an_offset_that_moved_is_a_conflict_naming_its_field() -> None:
    redis = _Redis()
    store = _store(redis)
    redis.keyspace.call("HSET", store.keys.offsets, "raw:0", "5")
    with pytest.raises(Conflict) as raised:
        await store.apply(_batch(["u1"]), [OffsetMove("raw", 0, 1, 2)])
    assert raised.value.field == "raw:0"
    assert redis.members(store.keys.day(TODAY, "users")) == set()


async def test_a_batch_after_one_stopped_halfway_is_refused_naming_that_batch() -> None:
    redis = _Redis()
    store = _store(redis)
    redis.keyspace.call("SET", store.keys.writing, "raw:0 1>2")  # the marker the stopped batch left
    with pytest.raises(PartialWrite) as raised:
        await store.apply(_batch(["u1"]), [OffsetMove("raw", 0, None, 1)])
    found = raised.value
    assert (found.key, found.field, found.detail) == (
        "{app}:v3:offsets:writing",
        None,
        "the batch that stopped moved raw:0 1>2",
    )
