"""RedisStore's reads: the stored offsets (and topic IDs) over the simulated keyspace, and the eviction
policy of the primary that holds the state in a Redis Cluster."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError

from tables.store import RedisStore
from tables.writes import InvalidStoredValue
from tests.unit.tables.layout_redis import LayoutRedis, layout_redis

WANTED = [("raw", 0), ("raw", 1), ("enriched", 0)]


def _store(stored: dict[str, str], redis: LayoutRedis | None = None) -> RedisStore:
    redis = redis or layout_redis()
    store = RedisStore(redis, "app", days_kept=2)  # type: ignore[arg-type]
    redis.keyspace.call("HSET", store.keys.offsets, *(x for item in stored.items() for x in item))
    return store


async def test_each_partition_gets_its_stored_offset_or_none() -> None:
    store = _store({"raw:0": "42", "enriched:0": "0", "raw:0:id": "AAAA", "other:1": "7"})
    assert await store.load_offsets(WANTED) == {("raw", 0): 42, ("raw", 1): None, ("enriched", 0): 0}
    assert await store.load_stored(WANTED) == {
        ("raw", 0): (42, "AAAA"),
        ("raw", 1): (None, None),
        ("enriched", 0): (0, None),
    }
    assert await store.load_offsets([]) == {} and await store.load_stored([]) == {}


@pytest.mark.parametrize("read", ["load_offsets", "load_stored"])
async def test_an_offset_that_is_not_a_number_names_its_key_field_and_value(read: str) -> None:
    store = _store({"raw:0": "42", "raw:1": "4x"})
    with pytest.raises(InvalidStoredValue) as refused:
        await getattr(store, read)(WANTED)
    found = refused.value
    assert (found.key, found.field, found.detail) == ("{app}:v3:offsets", "raw:1", "holds '4x'")


class _ShortReplies(LayoutRedis):
    """A reply one value short of the fields asked for (no Redis answers so; a proxy in between might)."""

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return (await super().hmget(key, fields))[:-1]


@pytest.mark.parametrize("read", ["load_offsets", "load_stored"])
async def test_a_reply_short_of_a_field_is_an_error_not_a_partition_left_out(read: str) -> None:
    store = _store({"raw:0": "42", "raw:1": "5", "enriched:0": "1"}, _ShortReplies(layout_redis().keyspace))
    with pytest.raises(ValueError, match="shorter"):
        await getattr(store, read)(WANTED)


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


class _Cluster(RedisCluster):
    """Two primaries, slots split in half; `silent` does not answer CONFIG GET."""

    def __init__(self, silent: str) -> None:
        self.silent = silent
        self.primaries = [_Node("low:6379"), _Node("high:6379")]

    def register_script(self, source: Any) -> Any:
        return None

    async def initialize(self, *args: Any, **kwargs: Any) -> _Cluster:
        return self

    def get_node_from_key(self, key: str, replica: bool = False) -> Any:
        return self.primaries[key_slot(key.encode()) >= 8192]

    def get_primaries(self) -> Any:
        return self.primaries

    async def config_get(self, pattern: Any = "*", *args: Any, **kwargs: Any) -> Any:
        if kwargs["target_nodes"].name == self.silent:
            raise ConnectionError("Connection refused")
        return {pattern: "noeviction"}


async def test_the_primary_holding_the_state_must_answer_its_eviction_policy() -> None:
    assert key_slot(b"{app}:v3:offsets") == 6805  # the low primary's
    store = RedisStore(_Cluster(silent="high:6379"), "app", days_kept=2)  # type: ignore[arg-type]
    assert await store.eviction_policy() == "noeviction (not answering: high:6379)"
    store = RedisStore(_Cluster(silent="low:6379"), "app", days_kept=2)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await store.eviction_policy()
