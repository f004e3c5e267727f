"""Sharded state's writes and offset reads: one RedisStore per shard, a batch written in two phases.

Phase 1: every member shard gets the batch's members that hash to it, and its watermarks (all shards, in
parallel). Phase 2, only once all of phase 1 succeeded: every partition shard the batch touches gets its
partitions' sums with their offsets (in parallel). Member writes are idempotent and the offsets move last,
so a crash anywhere leaves each shard consistent with its own offsets, and a replay adds nothing twice.
docs/design.md, "Sharded state", has the failure cases; tables/shard_split.py the split itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from tables.delta import Delta
from tables.eviction import eviction_policy
from tables.keys import offset_field
from tables.shard_split import counter_part, member_edit, member_parts, partition_edit
from tables.shards import GLOBAL_SHARD, ShardKeys, partition_shard, shard_keys
from tables.store import RedisStore
from tables.writes import InvalidStoredValue, OffsetMove

TopicPartition = tuple[str, int]


class ShardWritesFailed(Exception):
    """Phase 2 wrote some partition shards and not others: `written` moved their partitions' offsets with
    their sums; each of `failed` (shard -> what it raised) wrote nothing of its own and is handled as a
    one-shard write that raised the same (a Conflict reloads its partitions, a refusal pauses them)."""

    def __init__(self, written: list[int], failed: dict[int, BaseException]) -> None:
        super().__init__(", ".join(f"shard {k}: {type(e).__name__}: {e}" for k, e in sorted(failed.items())))
        self.written = written
        self.failed = failed


@dataclass(frozen=True)
class Split:
    """One batch's moves by partition shard."""

    moves: dict[int, list[OffsetMove]]


class ShardedStore:
    def __init__(
        self,
        client: aioredis.Redis,
        app_id: str,
        shards: int,
        days_kept: int,
        label_caps: dict[str, int] | None = None,
        seen_cache_entries: int = 0,
    ) -> None:
        assert shards > 1, "one shard is RedisStore itself"
        self.shards = shards
        # Each shard's store has its own keys, slot check, lineage and seen cache: a shard that lost writes
        # refuses its own lineage, and only its members are sent again in full. The caches share the one
        # budget STREAMS_SEEN_CACHE_ENTRIES sets (each shard holds about 1/S of the members).
        per_shard = -(-seen_cache_entries // shards)
        self.stores = [
            RedisStore(client, app_id, days_kept, label_caps, per_shard, keys=keys)
            for keys in shard_keys(app_id, shards)
        ]
        self.label_caps = self.stores[GLOBAL_SHARD].label_caps

    async def close(self) -> None:
        await self.stores[GLOBAL_SHARD].close()  # one client for every shard

    async def ping(self) -> None:
        await self.stores[GLOBAL_SHARD].ping()

    async def eviction_policy(self) -> str:
        """The first unsafe policy where a shard's keys live: every primary asked once, at once, and each
        shard's primary must answer (tables/eviction.py)."""
        return await eviction_policy(self.stores[GLOBAL_SHARD].client, [store.keys.offsets for store in self.stores])

    @property
    def shard_keys(self) -> list[ShardKeys]:
        return [self.keys(shard) for shard in range(self.shards)]

    def keys(self, shard: int) -> ShardKeys:
        found = self.stores[shard].keys
        assert isinstance(found, ShardKeys)
        return found

    def split(self, moves: Iterable[OffsetMove]) -> Split:
        by_shard: dict[int, list[OffsetMove]] = {}
        for m in moves:
            by_shard.setdefault(partition_shard(m.partition, self.shards), []).append(m)
        return Split(by_shard)

    async def apply(self, deltas: Mapping[int, Delta], moves: list[OffsetMove]) -> None:
        """Write one batch: `deltas` by partition shard (the tap folds the partitions of shard k into
        deltas[k]), `moves` every partition's. Raises what phase 1 raised (nothing moved any offset), or
        ShardWritesFailed when phase 2 failed on some shards (the others' offsets moved)."""
        split = self.split(moves)
        assert set(split.moves) <= set(deltas), "a partition's moves without its shard's Delta"
        # Phase 2 needs phase 1 whole: an offset may move only once every shard holds its records' members.
        await self.apply_members(deltas, moves)
        order = sorted(deltas)
        second = await asyncio.gather(
            *(
                self.stores[shard].apply(counter_part(deltas[shard]), split.moves.get(shard, []), partition_edit)
                for shard in order
            ),
            return_exceptions=True,
        )
        failed = {shard: o for shard, o in zip(order, second, strict=True) if isinstance(o, BaseException)}
        if failed:
            raise ShardWritesFailed([shard for shard in order if shard not in failed], failed)

    async def apply_members(self, deltas: Mapping[int, Delta], moves: list[OffsetMove]) -> None:
        """Phase 1 alone: the members of `deltas` (every shard's part, in parallel) with the watermarks of
        `moves`. Also what a member-only re-read sends, for records whose sums are stored already (a member
        shard that went back, docs/design.md): no offset moves, so nothing is counted twice."""
        parts = member_parts(deltas.values(), self.shards)
        caps = self.label_caps
        first = await asyncio.gather(
            *(
                store.apply(
                    part,
                    [],
                    member_edit(self.keys(shard), moves, deltas.values(), caps if shard == GLOBAL_SHARD else None),
                    self.keys(shard).watermarks,
                )
                for shard, (store, part) in enumerate(zip(self.stores, parts, strict=True))
            ),
            return_exceptions=True,
        )
        for outcome in first:
            if isinstance(outcome, BaseException):
                raise outcome  # the others' member writes stay: idempotent, the batch comes again

    async def load_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        found: dict[TopicPartition, int | None] = {}
        for shard, wanted in self._by_shard(partitions).items():
            found.update(await self.stores[shard].load_offsets(wanted))
        return found

    async def load_stored(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[int | None, str | None]]:
        found: dict[TopicPartition, tuple[int | None, str | None]] = {}
        for shard, wanted in self._by_shard(partitions).items():
            found.update(await self.stores[shard].load_stored(wanted))
        return found

    async def load_watermarks(
        self, partitions: Iterable[TopicPartition], ids: Mapping[TopicPartition, str | None] | None = None
    ) -> dict[TopicPartition, list[int | None]]:
        """Each partition's watermark in every member shard, in shard order (None: that shard has none, or
        one of another topic ID than `ids` gives, a topic since deleted): the rewind check compares them
        with the stored offsets (docs/design.md)."""
        wanted = list(partitions)
        found: dict[TopicPartition, list[int | None]] = {tp: [] for tp in wanted}
        if not wanted:
            return found
        fields = [f for t, p in wanted for f in (offset_field(t, p), offset_field(t, p) + ":id")]
        for shard in range(self.shards):
            key = self.keys(shard).watermarks
            values = await self.stores[shard].client.hmget(key, fields)
            for tp, field, value, wm_id in zip(wanted, fields[0::2], values[0::2], values[1::2], strict=True):
                topic_id = (ids or {}).get(tp)
                other = wm_id is not None and topic_id is not None and str(wm_id) != topic_id
                found[tp].append(None if other else _number(key, field, value))
        return found

    def _by_shard(self, partitions: Iterable[TopicPartition]) -> dict[int, list[TopicPartition]]:
        by_shard: dict[int, list[TopicPartition]] = {}
        for tp in partitions:
            by_shard.setdefault(partition_shard(tp[1], self.shards), []).append(tp)
        return by_shard


def _number(key: str, field: str, value: bytes | str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidStoredValue(key, field, detail=f"holds {value!r}") from None
