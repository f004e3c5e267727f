"""The purge of a layout kept in shards (tables/purge.py): the real Lua script over the simulated keyspace
with Redis's SCAN paging. Every shard's keys go, whatever count the marker names, and nothing else."""

from __future__ import annotations

import pytest

from tables.keys import LAYOUT_VERSION
from tables.layout import marker_key
from tables.lease import legacy_lease_key
from tables.purge import PurgeRefused, layout_keys, purge
from tests.unit.tables.layout_redis import APP, LayoutRedis, layout_redis

# Keys no purge of layout 3 may touch: the lease every release holds, other layouts' keys, other apps',
# and names that only look like a shard's tag.
KEPT = [
    "{app}:exporter",
    legacy_lease_key(APP),
    "{app}:v2:offsets",
    "{app}:v30:offsets",
    "{app:s1}:v30:offsets",
    "{app:s01}:v3:offsets",
    "{app:sx}:v3:offsets",
    "{app2:s0}:v3:offsets",
    "{other}:v3:offsets",
]


def sharded(marker: str) -> tuple[LayoutRedis, list[str]]:
    redis = layout_redis()
    doomed = [f"{{app:s{k}}}:v3:org:o{i}" for k in range(3) for i in range(40)]
    doomed += [f"{{app:s{k}}}:v3:offsets" for k in range(3)] + ["{app:s1}:v3:watermarks:writing"]
    doomed += ["{app:s7}:v3:watermarks", "{app}:v3:offsets"]  # left by other shard counts
    for key in doomed + KEPT:
        redis.keyspace.call("SET", key, "1")
    redis.keyspace.call("SET", marker_key(APP), marker)
    return redis, doomed


async def test_a_sharded_layout_is_purged_in_every_shard_and_its_marker_cleared() -> None:
    redis, doomed = sharded(f"{LAYOUT_VERSION}:s3")
    dry = await purge(redis, APP, LAYOUT_VERSION, dry_run=True, batch=7)
    assert (dry.keys, dry.in_use, dry.in_use_shards, dry.marker_cleared) == (len(doomed), 3, 3, False)
    assert all(k in redis.data for k in doomed) and redis.data[marker_key(APP)] == "3:s3"
    done = await purge(redis, APP, LAYOUT_VERSION, batch=7)
    assert (done.keys, done.in_use_shards, done.marker_cleared) == (len(doomed), 3, True)
    assert sorted(redis.data) == sorted(KEPT)
    assert redis.scans > len(doomed) // 7, "paged, not one SCAN of everything"


async def test_an_older_layout_is_purged_beside_a_sharded_marker_which_stays() -> None:
    redis, doomed = sharded(f"{LAYOUT_VERSION}:s3")
    done = await purge(redis, APP, 2)
    assert (done.keys, done.in_use, done.in_use_shards, done.marker_cleared) == (1, 3, 3, False)
    assert "{app}:v2:offsets" not in redis.data and redis.data[marker_key(APP)] == "3:s3"
    assert all(k in redis.data for k in doomed)


@pytest.mark.parametrize("marker", ["3:s0", "3:s", ":s2", "3:s2:s2", "3:S2", "03:s2"])
async def test_a_marker_of_neither_form_refuses_the_purge(marker: str) -> None:
    redis, _ = sharded(marker)
    before = dict(redis.data)
    with pytest.raises(PurgeRefused, match="not a layout number"):
        await purge(redis, APP, LAYOUT_VERSION)
    assert redis.data == before


def test_the_layout_keys_are_the_one_shard_prefix_and_every_shard_tag() -> None:
    wanted = layout_keys("a.b-c", 3)
    assert [k for k in ["{a.b-c}:v3:x", "{a.b-c:s0}:v3:x", "{a.b-c:s63}:v3:x"] if wanted.match(k)] == [
        "{a.b-c}:v3:x",
        "{a.b-c:s0}:v3:x",
        "{a.b-c:s63}:v3:x",
    ]
    assert not any(wanted.match(k) for k in ["{aXb-c}:v3:x", "{a.b-c:s0}:v30:x", "x{a.b-c}:v3:x", "{a.b-c}:v3"])
