"""Sharded state end to end on the real code: the fold per partition shard, ShardedStore's two phases (the
real batch script in Lua over the simulated keyspace) and the merged scrape, against the same events
written with one shard. Then the failures of docs/design.md, "Sharded state": a stop between the phases or
between two partition shards, a refused partition shard, a member shard gone back to an older snapshot."""

from __future__ import annotations

import pytest

from tables.shard_split import counter_part, member_parts, partition_edit
from tables.sharded_store import ShardedStore, ShardWritesFailed
from tables.store import RedisStore
from tables.writes import Conflict, MembersBehind
from tests.unit.tables.sharded_world import (
    APP,
    CAPS,
    Redis,
    batches,
    fold,
    fold_by_shard,
    scrape_one,
    scrape_sharded,
)


async def _oracle(seed: int, count: int) -> tuple[Redis, object]:
    redis = Redis()
    store = RedisStore(redis, APP, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    for batch in batches(seed, count):
        await store.apply(fold(batch.records), batch.moves)
    return redis, await scrape_one(redis)


@pytest.mark.parametrize("cache", [0, 1000])
@pytest.mark.parametrize("shards", [2, 3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_merged_scrape_is_the_one_shard_scrape(seed: int, shards: int, cache: int) -> None:
    _, expected = await _oracle(seed, 400)
    redis = Redis()
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), cache)  # type: ignore[arg-type]
    for batch in batches(seed, 400):
        await store.apply(fold_by_shard(batch, shards), batch.moves)
    found = await scrape_sharded(redis, shards)
    assert found == expected
    assert found.active_users > 0 and found.monthly_active_users > 0 and found.folded["org_id"] > 0
    # Nothing of the one-shard layout's keys: every key is under a shard's tag.
    assert not [k for k in redis.keyspace.data if k.startswith("{app}")]


async def test_a_stop_between_the_member_writes_and_the_partition_writes_replays_exactly() -> None:
    shards, all_batches = 3, batches(7, 300)
    _, expected = await _oracle(7, 300)
    redis = Redis()
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    for n, batch in enumerate(all_batches):
        deltas = fold_by_shard(batch, shards)
        if n % 3 == 1:  # the member writes only, then a crash: a new process sends the batch again
            await store.apply_members(deltas, batch.moves)
            store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
        await store.apply(deltas, batch.moves)
    assert await scrape_sharded(redis, shards) == expected


async def test_a_stop_between_two_partition_shards_replays_only_the_shard_not_written() -> None:
    shards, all_batches = 2, batches(8, 300)
    _, expected = await _oracle(8, 300)
    redis = Redis()
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    for n, batch in enumerate(all_batches):
        deltas = fold_by_shard(batch, shards)
        if n % 4 == 2 and len(deltas) == 2:
            # Members, then shard 0's partition write alone: the crash comes before shard 1's.
            await store.apply_members(deltas, batch.moves)
            moves = store.split(batch.moves).moves
            await store.stores[0].apply(counter_part(deltas[0]), moves.get(0, []), partition_edit)
            # Sent again whole: shard 0 answers a conflict (its offsets moved), shard 1 writes.
            with pytest.raises(ShardWritesFailed) as failed:
                await store.apply(deltas, batch.moves)
            assert failed.value.written == [1] and isinstance(failed.value.failed[0], Conflict)
            continue
        await store.apply(deltas, batch.moves)
    assert await scrape_sharded(redis, shards) == expected


async def test_a_member_shard_gone_back_is_found_and_read_again_for_its_members_only() -> None:
    """Shard 1 restored from a snapshot taken after batch 3 of 8: its own partitions' offsets and sums went
    back with its members (re-read in full), and so did the members of shard 0's partitions, whose offsets
    did not: the next write of those partitions finds shard 1 behind, and the range is written again for
    its members only."""
    shards, all_batches = 2, batches(9, 300)
    assert len(all_batches) > 9
    _, expected = await _oracle(9, 300)
    redis = Redis()
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    saved: dict[str, object] = {}
    for n, batch in enumerate(all_batches[:8]):
        await store.apply(fold_by_shard(batch, shards), batch.moves)
        if n == 3:
            saved = redis.snapshot("{app:s1}")
    redis.restore("{app:s1}", saved)  # type: ignore[arg-type]
    behind = None
    try:
        await store.apply(fold_by_shard(all_batches[8], shards), all_batches[8].moves)
    except MembersBehind as exc:
        behind = exc
    assert behind is not None, "shard 1 lacks members its watermarks no longer cover"
    # The recovery the tap makes (agents/member_reread.py), done by hand here: every partition read again
    # from what its own shard stores, and what lies below the applied offsets written for members only.
    redis_after = await _recover(store, redis, all_batches, upto=8, shards=shards)
    for batch in all_batches[8:]:
        await store.apply(fold_by_shard(batch, shards), batch.moves)
    assert await scrape_sharded(redis_after, shards) == expected


async def _recover(store: ShardedStore, redis: Redis, all_batches: list, upto: int, shards: int) -> Redis:  # type: ignore[type-arg]
    """Re-read the first `upto` batches as the tap would after the rewind: per partition, records below its
    stored offset are member-only (their sums are stored), records from it on are written in full."""
    partitions = sorted({(m.topic, m.partition) for b in all_batches[:upto] for m in b.moves})
    stored = await store.load_offsets(partitions)
    for batch in all_batches[:upto]:
        members_only, full = {}, {}
        for tp, recs in batch.records.items():
            at = stored[tp] or 0
            if recs[-1].offset < at:
                members_only[tp] = recs
            else:
                full[tp] = recs
        moves_members = [m for m in batch.moves if (m.topic, m.partition) in members_only]
        moves_full = [m for m in batch.moves if (m.topic, m.partition) in full]
        if members_only:
            from tests.unit.tables.sharded_world import Batch

            part = Batch(members_only, moves_members)
            await store.apply_members(fold_by_shard(part, shards), moves_members)
        if full:
            from tests.unit.tables.sharded_world import Batch

            part = Batch(full, moves_full)
            await store.apply(fold_by_shard(part, shards), moves_full)
    return redis


def test_member_parts_hold_every_member_once() -> None:
    from tests.unit.tables.sharded_world import batches as make

    for batch in make(3, 200):
        delta = fold(batch.records)
        parts = member_parts([delta], 3)
        for name in ("orgs", "users", "window_only_users", "window_only_orgs"):
            whole = getattr(delta, name)
            for day, members in whole.items():
                split = [getattr(p, name).get(day, set()) for p in parts]
                assert set().union(*split) == members and sum(map(len, split)) == len(members)
