"""What `python -m streams.tools.layout status` says of sharded state (STREAMS_REDIS_SHARDS, tables/shards.py):
where each shard's hash tag lives, which shards hold state, and the partial-write markers that refuse writes.

Sharding spreads load only between primaries: two shards whose slots sit on one primary share its one
Redis thread, so the report warns of every primary holding more than one (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from tables.keys import Keys
from tables.shards import MAX_SHARDS, WATERMARKS, ShardKeys, shard_tag


@dataclass(frozen=True)
class Place:
    shard: int  # -1: the one-shard tag `{app}`
    tag: str
    slot: int
    primary: str  # host:port of the primary serving the slot; "" outside a Redis Cluster

    def line(self) -> str:
        where = f", primary {self.primary}" if self.primary else ""
        name = "state" if self.shard < 0 else f"shard {self.shard}:"
        return f"{name} hash tag {self.tag}, slot {self.slot}{where}"


async def places(client: Any, app_id: str, shards: int) -> list[Place]:
    """Each shard's tag, slot and (in a Redis Cluster) primary, in shard order; the tag `{app}` for one."""
    tags = [(-1, "{" + app_id + "}")] if shards == 1 else [(k, shard_tag(app_id, k)) for k in range(shards)]
    cluster = isinstance(client, RedisCluster)
    if cluster:
        await client.initialize()
    found = []
    for shard, tag in tags:
        node = client.get_node_from_key(tag) if cluster else None
        found.append(Place(shard, tag, key_slot(tag.encode()), node.name if node is not None else ""))
    return found


def crowding(found: Sequence[Place]) -> list[str]:
    """Warnings: each primary that holds more than one shard (every shard, outside a Redis Cluster)."""
    if len(found) < 2:
        return []
    if not any(p.primary for p in found):
        return [
            f"all {len(found)} shards sit on one Redis server: sharding spreads nothing there; a Redis Cluster "
            "with their slots on distinct primaries does (docs/operations.md, Sharded state on a Redis Cluster)"
        ]
    by_primary: dict[str, list[int]] = {}
    for p in found:
        by_primary.setdefault(p.primary, []).append(p.shard)
    return [
        f"shards {', '.join(map(str, held))} sit on one primary ({primary}): their writes and scrapes share its "
        "one thread, so sharding spreads nothing between them; move their slots to distinct primaries "
        "(docs/operations.md, Sharded state on a Redis Cluster)"
        for primary, held in sorted(by_primary.items())
        if len(held) > 1
    ]


async def shards_with_state(client: Any, app_id: str) -> list[int]:
    """Every shard number (up to MAX_SHARDS) whose offsets or watermarks exist: state of the count in use,
    or left by another count that was never purged."""
    held = []
    for k in range(MAX_SHARDS):
        keys = ShardKeys(app_id, k)
        # One EXISTS per shard: both keys share its tag, so its slot, as a cluster asks.
        if await client.exists(keys.offsets, keys.watermarks):
            held.append(k)
    return held


async def partial_writes(client: Any, app_id: str, shards: int) -> list[tuple[str, str, str]]:
    """(key, what it holds, which writes it refuses) for each partial-write marker of the state in use: a
    batch script stopped after its first write (tables/script.py), and that shard's writes wait for an
    operator (RUNBOOK.md, StateWritesRefused)."""
    if shards == 1:
        markers = [(Keys(app_id).writing, "every batch write")]
    else:
        markers = []
        for k in range(shards):
            keys = ShardKeys(app_id, k)
            markers.append((keys.writing, f"the writes of shard {k}'s partitions"))
            # A member write names the shard's watermarks hash first; its marker is named after it.
            markers.append((f"{keys.key(WATERMARKS)}:writing", f"every batch's member writes (shard {k})"))
    found = []
    for key, refuses in markers:
        value = await client.get(key)
        if value is not None:
            found.append((key, value.decode() if isinstance(value, bytes) else str(value), refuses))
    return found
