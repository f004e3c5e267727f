"""The batch script's watermarks (tables/script.py, `wm`), run in Lua over the simulated keyspace: a member
shard's write moves a partition's watermark only while nothing is missing below it, to the larger of the
two, and refuses whole (reply 8) a write that starts past it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tables.delta import Delta, pair
from tables.script import APPLY_LUA
from tables.shards import ShardKeys
from tables.store import RedisStore
from tables.writes import MembersBehind
from tests.unit.tables.sharded_world import APP, TODAY, Redis, today_index

KEYS = ShardKeys(APP, 1)
WM = KEYS.watermarks


def _payload(wm: list[list[str]], users: list[str] = ()) -> bytes:  # type: ignore[assignment]
    delta = Delta(today_index=today_index())
    if users:
        delta.users[TODAY] = {pair("o1", u) for u in users}
        delta.orgs[TODAY] = {"o1"}
    payload: dict[str, Any] = RedisStore(Redis(), APP, 2, keys=KEYS).build_payload(delta, [])  # type: ignore[arg-type]
    payload["wm"] = wm
    return orjson.dumps(payload)


def _run(redis: Redis, wm: list[list[str]], users: list[str] = ()) -> Any:  # type: ignore[assignment]
    return redis.run(APPLY_LUA, [WM], [_payload(wm, users)])


@pytest.mark.parametrize(
    ("stored", "start", "end", "reply", "after"),
    [
        (None, "", "5", [1, ""], "5"),  # never written: from the log start
        ("5", "5", "9", [1, ""], "9"),  # the next batch
        ("9", "5", "9", [1, ""], "9"),  # the same batch again (a crash before the offsets moved)
        ("9", "0", "3", [1, ""], "9"),  # an older range again (a member-only re-read): never lowered
        ("12", "5", "9", [1, ""], "12"),  # a zombie's older batch: harmless
        ("9", "", "3", [1, ""], "9"),  # a partition read from its log start again: never lowered
        ("5", "7", "9", [8, "raw:0", "5"], "5"),  # records 5 and 6 are missing here: refused
        (None, "5", "9", [8, "raw:0", ""], None),  # a shard restarted empty
    ],
)
def test_a_watermark_moves_only_over_what_the_shard_holds(
    stored: str | None, start: str, end: str, reply: list[Any], after: str | None
) -> None:
    redis = Redis()
    if stored is not None:
        redis.keyspace.call("HSET", WM, "raw:0", stored)
    assert _run(redis, [["raw:0", start, end, "", ""]], ["u1"]) == reply
    assert redis.keyspace.call("HGET", WM, "raw:0") == after
    written = redis.keyspace.data.get(KEYS.day(TODAY, "users"), set())
    assert written == (set() if reply[0] == 8 else {pair("o1", "u1")}), "refused whole, or written"


def test_one_partition_behind_refuses_the_others_too() -> None:
    redis = Redis()
    redis.keyspace.call("HSET", WM, "raw:0", "5", "raw:1", "3")
    assert _run(redis, [["raw:0", "5", "8", "", ""], ["raw:1", "4", "6", "", ""]]) == [8, "raw:1", "3"]
    assert redis.keyspace.call("HGETALL", WM) == ["raw:0", "5", "raw:1", "3"]


def test_a_watermark_that_is_not_a_number_is_refused_by_name() -> None:
    redis = Redis()
    redis.keyspace.call("HSET", WM, "raw:0", "5x")
    assert _run(redis, [["raw:0", "5", "8", "", ""]]) == [4, WM, "raw:0"]


def test_a_write_stopped_halfway_names_its_watermark_moves() -> None:
    redis = Redis()
    redis.keyspace.call("SET", WM + ":writing", "raw:0 members 5>8")
    assert _run(redis, [["raw:0", "5", "8", "", ""]]) == [7, WM + ":writing", "raw:0 members 5>8"]


async def test_the_store_raises_members_behind_and_forgets_what_it_knew() -> None:
    redis = Redis()
    store = RedisStore(redis, APP, 2, seen_cache_entries=100, keys=KEYS)  # type: ignore[arg-type]
    redis.keyspace.call("HSET", WM, "raw:0", "5")

    def edit(payload: dict[str, object]) -> None:
        payload["wm"] = [["raw:0", "7", "9", "", ""]]

    delta = Delta(today_index=today_index())
    delta.users[TODAY] = {pair("o1", "u1")}
    with pytest.raises(MembersBehind) as behind:
        await store.apply(delta, [], edit, WM)
    assert (behind.value.field, behind.value.watermark) == ("raw:0", 5)
    assert store.seen.size == 0 and store._lineage_expected is None


@pytest.mark.parametrize(
    ("stored_id", "entry", "reply", "after"),
    [
        ("A", ["raw:0", "5", "14", "A", ""], [1, ""], ("14", "A")),  # the same topic
        (None, ["raw:0", "5", "9", "A", ""], [1, ""], ("12", "A")),  # the first ID learnt (never lowered)
        ("A", ["raw:0", "5", "14", "", ""], [1, ""], ("14", "A")),  # a broker without IDs: not compared
        ("A", ["raw:0", "5", "9", "B", ""], [8, "raw:0", ""], ("12", "A")),  # of a deleted topic: from its start
        ("A", ["raw:0", "", "3", "B", ""], [1, ""], ("3", "B")),  # from the new topic's start: set, not max
        ("A", ["raw:0", "12", "0", "B", "1"], [1, ""], ("0", "B")),  # the move to the re-created topic
    ],
)
def test_a_watermark_is_of_one_topic_id(
    stored_id: str | None, entry: list[str], reply: list[Any], after: tuple[str, str]
) -> None:
    redis = Redis()
    redis.keyspace.call("HSET", WM, "raw:0", "12")
    if stored_id is not None:
        redis.keyspace.call("HSET", WM, "raw:0:id", stored_id)
    assert _run(redis, [entry]) == reply
    assert (redis.keyspace.call("HGET", WM, "raw:0"), redis.keyspace.call("HGET", WM, "raw:0:id")) == after
