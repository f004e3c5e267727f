"""The sharded scrape's merge of replies before naming (tables/reply_merge.py) against the merge of named,
checked tables it replaced, which stays as its fallback: equal on every world of the sharded tests, and the
fallback taken, with values left out counted per shard, where a stored value is not a number."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from core.ratelog import RateLimitedLog
from tables import checked
from tables.checked import readable
from tables.keys import DAY_KWH, DAY_ORG_USERS, INVALID, LAST_TS, PROCESSED
from tables.reads import Reads
from tables.reply_merge import merged_replies
from tables.shard_reads import merge, merged_tables
from tables.sharded_store import ShardedStore
from tables.shards import GLOBAL_SHARD, ShardKeys
from tables.table_reads import LABELS, label_members, read_layout, table_reads, tables_from
from tests.sim.scrape import ReadClient
from tests.unit.tables.sharded_world import APP, CAPS, TODAY, Redis, batches, fold_by_shard


def _reads(ops: list[tuple[str, list[str] | None]], largest: int | None = None) -> Reads:
    reads = Reads()
    for n, (op, fields) in enumerate(ops):
        if op == "G":
            reads.hgetall(f"k{n}", largest=n == largest)
        elif op == "M":
            reads.hmget(f"k{n}", fields or [])
        else:
            reads.scard(f"k{n}")
    return reads


@pytest.mark.parametrize(
    ("op", "shard_replies", "merged"),
    [
        ("G", [["a", "1", "b", "2"], ["b", "3", "c", "-4"]], {"a": 1, "b": 5, "c": -4}),
        ("G", [[], []], {}),
        ("G", [["a", "9223372036854775807"], ["a", "1"]], {"a": 9223372036854775808}),
        ("M", [["1", None, None], [None, None, "2"], ["3", None, "4"]], [4, None, 6]),
        ("M", [[], []], []),
        ("S", [3, 0, 4], 7),
    ],
)
def test_each_kind_of_reply_merges_as_the_named_merge_does(op: str, shard_replies: list[Any], merged: Any) -> None:
    reads = _reads([(op, ["f"] * len(shard_replies[0]) if op == "M" else None)])
    assert merged_replies(reads, [[r] for r in shard_replies]) == [merged]


@pytest.mark.parametrize(
    ("shard_replies", "merged"),
    [
        ([["raw", "1700000000000"], ["raw", "1700000000001.5"]], {"raw": "1700000000001.5"}),
        ([["raw", "5"], ["raw", "5.0"], ["x", "2"]], {"raw": "5", "x": "2"}),  # a tie keeps the first shard's
    ],
)
def test_the_largest_read_keeps_the_largest_text(shard_replies: list[list[str]], merged: dict[str, str]) -> None:
    reads = _reads([("G", None)], largest=0)
    assert merged_replies(reads, [[r] for r in shard_replies]) == [merged]


@pytest.mark.parametrize(
    ("op", "shard_replies", "largest"),
    [
        ("G", [["a", "1"], ["a", "one"]], None),
        ("G", [["a", "1.5"], ["a", "1"]], None),
        ("M", [["1", "x"], ["1", "2"]], None),
        ("M", [["1", None], [None, ""]], None),
        ("G", [["raw", "inf"], ["raw", "1"]], 0),
        ("G", [["raw", "nan"]], 0),
        ("G", [["raw", "soon"]], 0),
    ],
)
def test_a_value_that_is_not_a_number_raises(op: str, shard_replies: list[Any], largest: int | None) -> None:
    reads = _reads([(op, ["f"] * len(shard_replies[0]) if op == "M" else None)], largest)
    with pytest.raises(ValueError):
        merged_replies(reads, [[r] for r in shard_replies])


async def _world(seed: int, shards: int) -> Redis:
    redis = Redis()
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    for batch in batches(seed, 300):
        await store.apply(fold_by_shard(batch, shards), batch.moves)
    return redis


async def _both(redis: Redis, shards: int, stale: bool = False) -> tuple[Any, Any]:
    """The shards' replies merged by merged_tables, and by naming, checking and merging each shard's."""
    client = ReadClient(redis.keyspace)
    keys = [ShardKeys(APP, shard) for shard in range(shards)]
    layout = read_layout(TODAY, await label_members(client, keys[GLOBAL_SHARD]))  # type: ignore[arg-type]
    reads = [table_reads(k, layout) for k in keys]
    replies = [await r.replies(client) for r in reads]  # type: ignore[arg-type]
    seen = {label: len(redis.keyspace.data.get(keys[GLOBAL_SHARD].label_values(label), set())) for label in LABELS}
    checked = [readable(tables_from(r.as_read(reply), layout)) for r, reply in zip(reads, replies, strict=True)]
    named = merge([clean for clean, _ in checked], seen, stale)
    left_out: dict[str, int] = {}
    for _, bad in checked:
        for table, n in bad.items():
            left_out[table] = left_out.get(table, 0) + n
    return merged_tables(reads, replies, layout, seen, stale), (named, left_out)


@pytest.mark.parametrize("shards", [2, 3])
@pytest.mark.parametrize("seed", [1, 4, 9])
async def test_the_merged_replies_are_the_merged_named_tables(seed: int, shards: int) -> None:
    redis = await _world(seed, shards)
    (found, left_out), (expected, expected_left_out) = await _both(redis, shards)
    assert found == expected and left_out == expected_left_out == {}
    assert found.active_users > 0 and found.org_fields and found.last_ts


async def test_a_stale_read_is_stale_in_the_merged_tables_too() -> None:
    redis = await _world(3, 3)
    (found, _), (expected, _) = await _both(redis, 3, stale=True)
    assert found == expected and found.members_stale


@pytest.mark.parametrize(
    ("shard", "name", "field", "value", "table"),
    [
        (1, PROCESSED, "raw", "lots", "processed"),
        (0, LAST_TS, "raw", "inf", "last_ts"),
        (1, LAST_TS, "raw", "yesterday", "last_ts"),
        (1, INVALID, "raw", "2", "invalid"),  # a field name that is not a (topic, reason) pair
    ],
)
async def test_a_value_that_is_not_a_number_is_left_out_and_counted_per_shard(
    shard: int, name: str, field: str, value: str, table: str
) -> None:
    redis = await _world(2, 2)
    redis.keyspace.data.setdefault(ShardKeys(APP, shard).key(name), {})[field] = value
    (found, left_out), (expected, expected_left_out) = await _both(redis, 2)
    assert found == expected and left_out == expected_left_out
    assert left_out[table] == 1


@pytest.mark.parametrize("name", [DAY_KWH, DAY_ORG_USERS])
async def test_a_value_read_by_field_that_is_not_a_number_is_left_out_and_counted(name: str) -> None:
    redis = await _world(2, 2)
    org = sorted(redis.keyspace.data[ShardKeys(APP, GLOBAL_SHARD).labels("org_id")])[0]
    redis.keyspace.data.setdefault(ShardKeys(APP, 1).day(TODAY, name), {})[org] = "many"
    (found, left_out), (expected, expected_left_out) = await _both(redis, 2)
    assert found == expected and left_out == expected_left_out and sum(left_out.values()) == 1


async def test_a_name_that_is_not_readable_in_two_shards_is_counted_twice_and_logged_per_shard(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checked, "_warn", RateLimitedLog(checked.log, interval_s=0))  # every line kept
    redis = await _world(2, 2)
    for shard in (0, 1):
        redis.keyspace.data.setdefault(ShardKeys(APP, shard).key(INVALID), {})[f"nopair{shard}"] = "2"
    with caplog.at_level(logging.WARNING, logger="tables.snapshot"):
        (found, left_out), (expected, expected_left_out) = await _both(redis, 2)
    assert found == expected and left_out == expected_left_out == {"invalid": 2}
    # Each name once by merged_tables' per-shard check and once by this test's own; the check of the
    # merged tables, which holds both names, only asks (it would log two more).
    assert sum("nopair" in r.getMessage() for r in caplog.records) == 4
