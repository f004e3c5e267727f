"""The layout check with a shard count (tables/layout.py, tables/shards.py): the real Lua script over the
simulated keyspace. One shard keeps the marker and every answer of the one-shard check; another count
is written as `<layout>:s<count>`, and a replica set to another count than the state's refuses, even opted
in to a re-read (docs/design.md, "Sharded state")."""

from __future__ import annotations

import pytest

from tables.keys import LAYOUT_VERSION, Keys
from tables.layout import BROKEN, OK, REFUSED, TOOK_OVER, LayoutStore, marker_key
from tables.shards import ShardKeys
from tests.unit.tables.layout_redis import APP, layout_redis, stored_offsets

SHARDED = f"{LAYOUT_VERSION}:s3"


async def test_a_new_install_with_shards_is_claimed_for_its_count() -> None:
    redis = layout_redis()
    check = await LayoutStore(redis, APP, shards=3).check(take_over=False)
    assert (check.outcome, check.found, check.found_shards, check.runs) == (OK, LAYOUT_VERSION, 3, True)
    assert redis.keyspace.call("GET", marker_key(APP)) == SHARDED
    again = await LayoutStore(redis, APP, shards=3).check(take_over=False)
    assert (again.outcome, again.refusal) == (OK, "")


async def test_one_shard_writes_the_marker_it_always_wrote() -> None:
    redis = layout_redis()
    assert (await LayoutStore(redis, APP, shards=1).check(take_over=False)).outcome == OK
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)


@pytest.mark.parametrize("take_over", [False, True])
@pytest.mark.parametrize(("marked", "shards", "found"), [(SHARDED, 1, 3), (SHARDED, 2, 3), (str(LAYOUT_VERSION), 3, 1)])
async def test_another_shard_count_of_this_layout_is_refused_even_opted_in(
    marked: str, shards: int, found: int, take_over: bool
) -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), marked)
    check = await LayoutStore(redis, APP, shards=shards).check(take_over=take_over)
    assert (check.outcome, check.found, check.found_shards) == (REFUSED, LAYOUT_VERSION, found)
    assert check.shard_change
    assert check.reason == f"state kept in {found} shard(s), this replica is set to {shards}"
    assert check.refusal.startswith(f"state kept in {found} shard")
    assert f"set STREAMS_REDIS_SHARDS={found} again" in check.refusal
    assert redis.keyspace.call("GET", marker_key(APP)) == marked, "the marker is left as it was"


async def test_one_shard_state_before_the_marker_is_refused_by_a_sharded_replica() -> None:
    """A release before the marker wrote one shard's offsets and no marker: claiming the marker for three
    shards would hide that state, so the replica refuses, as for a marker naming one shard."""
    redis = layout_redis()
    stored_offsets(redis, Keys(APP).offsets)
    check = await LayoutStore(redis, APP, shards=3).check(take_over=True)
    assert (check.outcome, check.found_shards, check.shard_change) == (REFUSED, 1, True)
    assert redis.keyspace.call("GET", marker_key(APP)) is None


async def test_an_older_layout_is_taken_over_into_a_sharded_one_when_opted_in() -> None:
    """A layout change is a rebuild into keys of their own whatever the count: the opt-in applies."""
    redis = layout_redis()
    stored_offsets(redis, "{app}:v2:offsets")
    store = LayoutStore(redis, APP, shards=3)
    refused = await store.check(take_over=False)
    assert (refused.outcome, refused.found, refused.shard_change) == (REFUSED, 2, False)
    assert (await store.check(take_over=True)).outcome == TOOK_OVER
    assert redis.keyspace.call("GET", marker_key(APP)) == SHARDED


async def test_a_sharded_marker_of_a_newer_layout_is_a_layout_refusal() -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), f"{LAYOUT_VERSION + 1}:s2")
    check = await LayoutStore(redis, APP, shards=2).check(take_over=False)
    assert (check.outcome, check.found, check.shard_change) == (REFUSED, LAYOUT_VERSION + 1, False)
    assert check.reason.startswith(f"state in a newer key layout ({LAYOUT_VERSION + 1},")


@pytest.mark.parametrize("value", ["3:s0", "3:s", "3:2", ":s2", "3:s2:s2", "3:S2"])
async def test_a_marker_of_neither_form_is_a_layout_problem_named(value: str) -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), value)
    check = await LayoutStore(redis, APP, shards=2).check(take_over=True)
    assert (check.outcome, check.runs) == (BROKEN, False)
    assert check.refusal.startswith(f"the layout marker {{app}}:layout holds {value!r}, not a layout number")


@pytest.mark.parametrize("shards", [1, 2, 4])
async def test_sharded_state_without_its_marker_is_refused_for_another_count(shards: int) -> None:
    """The marker deleted by hand, or by a purge cut short: the shards' keys (in slots of their own) still
    tell the count, and no other count claims the marker over them."""
    redis = layout_redis()
    redis.keyspace.call("HSET", ShardKeys(APP, 0).watermarks, "raw:0", "5")
    redis.keyspace.call("HSET", ShardKeys(APP, 2).offsets, "raw:2", "7")
    check = await LayoutStore(redis, APP, shards=shards).check(take_over=True)
    assert (check.outcome, check.found_shards, check.shard_change) == (REFUSED, 3, True)
    assert redis.keyspace.call("GET", marker_key(APP)) is None, "nothing written"


async def test_sharded_state_without_its_marker_is_claimed_again_by_its_own_count() -> None:
    redis = layout_redis()
    redis.keyspace.call("HSET", ShardKeys(APP, 2).watermarks, "raw:0", "5")
    check = await LayoutStore(redis, APP, shards=3).check(take_over=False)
    assert (check.outcome, check.found_shards) == (OK, 3)
    assert redis.keyspace.call("GET", marker_key(APP)) == SHARDED


async def test_a_purge_cut_short_after_shard_0_is_still_refused_for_another_count() -> None:
    """The purge deletes the marker first, then keys in scan order: shard 0's may be gone, shard 2's not."""
    redis = layout_redis()
    redis.keyspace.call("HSET", ShardKeys(APP, 2).offsets, "raw:2", "7")
    check = await LayoutStore(redis, APP, shards=2).check(take_over=False)
    assert (check.outcome, check.found_shards) == (REFUSED, 3)
    assert redis.keyspace.call("GET", marker_key(APP)) is None
