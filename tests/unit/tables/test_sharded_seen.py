"""The seen cache over sharded state: the shards' caches share the one STREAMS_SEEN_CACHE_ENTRIES budget,
so memory stays what the docs say for one shard whatever S is."""

from __future__ import annotations

import pytest

from tables.delta import Delta
from tables.sharded_store import ShardedStore
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.unit.tables.sharded_world import APP, TODAY, Redis, today_index


def _thousand_users() -> Delta:
    delta = Delta()
    delta.today_index = today_index()
    delta.users = {TODAY: {f"2:o1u{i}" for i in range(1000)}}
    delta.orgs = {TODAY: {"o1"}}
    return delta


@pytest.mark.parametrize(("budget", "shards"), [(100, 2), (100, 4), (100, 3), (7, 8)])
async def test_the_shards_share_one_seen_cache_budget(budget: int, shards: int) -> None:
    one = RedisStore(Redis(), APP, 2, None, budget)  # type: ignore[arg-type]
    await one.apply(_thousand_users(), [OffsetMove("raw", 0, None, 1)])
    sharded = ShardedStore(Redis(), APP, shards, 2, None, budget)  # type: ignore[arg-type]
    await sharded.apply({0: _thousand_users()}, [OffsetMove("raw", 0, None, 1)])
    sizes = [store.seen.size for store in sharded.stores]
    assert one.seen.size == budget
    # Rounded up per shard: at most S - 1 entries over the budget.
    assert budget <= sum(sizes) < budget + shards
    assert all(size > 0 for size in sizes)
