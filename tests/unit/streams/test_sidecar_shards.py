"""The composition root with STREAMS_REDIS_SHARDS: the sharded store, the layout check's shard count, and
the one-shard store and check left as they were for 1."""

from __future__ import annotations

from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.keys import LAYOUT_VERSION
from tables.layout import OK, marker_key
from tables.sharded_store import ShardedStore
from tables.store import RedisStore
from tests.unit.tables.layout_redis import layout_redis


async def test_one_shard_builds_the_one_shard_store() -> None:
    sidecar = Sidecar(Settings(), 6066, redis=layout_redis())  # type: ignore[arg-type]
    assert type(sidecar.store) is RedisStore and sidecar.store.keys.prefix == "{ecomind-streams}:v3"
    assert sidecar.layouts.shards == 1


async def test_shards_build_the_sharded_store_and_claim_the_marker_for_their_count() -> None:
    redis = layout_redis()
    sidecar = Sidecar(Settings(redis_shards=3), 6066, redis=redis)  # type: ignore[arg-type]
    store = sidecar.store
    assert isinstance(store, ShardedStore) and store.shards == 3
    assert [k.prefix for k in store.shard_keys] == [f"{{ecomind-streams:s{k}}}:v3" for k in range(3)]
    assert store.label_caps == {"org_id": 500, "provider": 100, "model": 100}
    assert (await sidecar.layouts.check(take_over=False)).outcome == OK
    assert redis.keyspace.call("GET", marker_key("ecomind-streams")) == f"{LAYOUT_VERSION}:s3"
