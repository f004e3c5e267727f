"""The eviction check over sharded state on a cluster (tables/sharded_store.py, tables/eviction.py): every
primary asked once, whatever the shard count, so one silent primary costs one node timeout; each shard's
own primary must answer, and an unsafe policy on any of them is named."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from tables import eviction
from tables.sharded_store import ShardedStore


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


class _Cluster(RedisCluster):
    """Three primaries: shards on `a` and `b` (by the parity of the key's shard digit), none on `c`."""

    def __init__(self, policies: dict[str, str | None]) -> None:
        self.nodes = {name: _Node(name) for name in policies}
        self.policies = policies  # None: the primary does not answer
        self.asked: list[str] = []

    def register_script(self, source: Any) -> Any:
        return None

    async def initialize(self, *args: Any, **kwargs: Any) -> _Cluster:
        return self

    def get_node_from_key(self, key: str, replica: bool = False) -> Any:
        shard = int(key.split(":s")[1].split("}")[0])
        return self.nodes["a" if shard % 2 == 0 else "b"]

    def get_primaries(self) -> Any:
        return list(self.nodes.values())

    async def config_get(self, pattern: Any = "*", *args: Any, **kwargs: Any) -> Any:
        name = kwargs["target_nodes"].name
        self.asked.append(name)
        if self.policies[name] is None:
            await asyncio.sleep(3600)
        return {pattern: self.policies[name]}


@pytest.mark.parametrize(
    ("policies", "want"),
    [
        ({"a": "noeviction", "b": "noeviction", "c": "noeviction"}, "noeviction"),
        ({"a": "noeviction", "b": "noeviction", "c": None}, "noeviction (not answering: c)"),
        ({"a": "noeviction", "b": "volatile-lru", "c": "noeviction"}, "volatile-lru (primary b)"),
        ({"a": "noeviction", "b": "noeviction", "c": "allkeys-lru"}, "allkeys-lru (primary c)"),
    ],
)
async def test_every_primary_is_asked_once_whatever_the_shard_count(
    monkeypatch: pytest.MonkeyPatch, policies: dict[str, str | None], want: str
) -> None:
    monkeypatch.setattr(eviction, "NODE_TIMEOUT_S", 0.05)
    cluster = _Cluster(policies)
    store = ShardedStore(cluster, "app", 8, 2)  # type: ignore[arg-type]
    assert await store.eviction_policy() == want
    assert sorted(cluster.asked) == ["a", "b", "c"]


async def test_a_shards_own_primary_must_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eviction, "NODE_TIMEOUT_S", 0.05)
    store = ShardedStore(_Cluster({"a": "noeviction", "b": None, "c": "noeviction"}), "app", 3, 2)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await store.eviction_policy()
