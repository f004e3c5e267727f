"""Which shard holds what (tables/shards.py): keys, partitions, members, the marker's value."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from tables.delta import pair
from tables.keys import LAYOUT_VERSION, Keys, active_bucket_of
from tables.shards import (
    MAX_SHARDS,
    ShardKeys,
    marker_value,
    member_shard,
    parse_marker,
    partition_shard,
    shard_keys,
    shard_tag,
)


def test_one_shard_is_the_one_shard_layout_itself() -> None:
    (only,) = shard_keys("app", 1)
    assert only == Keys("app") and only.offsets == "{app}:v3:offsets"


def test_each_shard_has_its_own_hash_tag_and_the_same_names() -> None:
    keys = shard_keys("app", 3)
    assert [k.offsets for k in keys] == [f"{{app:s{i}}}:v{LAYOUT_VERSION}:offsets" for i in range(3)]
    assert keys[1].day("2026-12-07", "users") == "{app:s1}:v3:day:2026-12-07:users"
    assert keys[2].watermarks == "{app:s2}:v3:watermarks"  # type: ignore[attr-defined]
    assert keys[0].label_values("org_id") == "{app:s0}:v3:values:org_id"  # type: ignore[attr-defined]
    # Every key of a shard is in its tag's slot; the shards' slots differ from the one-shard tag's.
    assert {key_slot(k.encode()) for k in (keys[1].offsets, keys[1].org("o"), keys[1].watermarks)} == {  # type: ignore[attr-defined]
        key_slot(b"{app:s1}")
    }
    assert shard_tag("app", 0) == "{app:s0}"


def test_a_shard_keys_object_is_a_keys_object() -> None:
    """The store's payload builder takes any Keys: a shard's gives the same names under its own tag."""
    k = ShardKeys("app", 2)
    assert isinstance(k, Keys) and k.prefix == "{app:s2}:v3"
    assert k.active_bucket("u", 7) == "{app:s2}:v3:act:u:7"


@pytest.mark.parametrize("shards", [1, 2, 3, 7, MAX_SHARDS])
def test_both_topics_partition_p_live_in_shard_p_mod_s(shards: int) -> None:
    assert [partition_shard(p, shards) for p in range(2 * shards)] == [p % shards for p in range(2 * shards)]


@pytest.mark.parametrize("shards", [1, 2, 3, 16])
def test_a_member_lives_in_its_windows_buckets_shard(shards: int) -> None:
    members = ["o1", pair("o1", "u1"), pair("o2", "u1"), "é", "\udc80"]
    for m in members:
        assert member_shard(m, shards) == active_bucket_of(m) % shards
    # The shard is a function of the bucket: each windows bucket hash lies wholly in one shard.
    by_bucket: dict[int, set[int]] = {}
    for i in range(5_000):
        m = pair("o", f"u{i}")
        by_bucket.setdefault(active_bucket_of(m), set()).add(member_shard(m, shards))
    assert all(len(found) == 1 for found in by_bucket.values())


def test_members_spread_over_the_shards() -> None:
    counts = [0, 0, 0]
    for i in range(30_000):
        counts[member_shard(pair(f"o{i % 300}", f"u{i}"), 3)] += 1
    assert min(counts) > 9_000, counts


@pytest.mark.parametrize(("layout", "shards", "value"), [(3, 1, "3"), (3, 2, "3:s2"), (4, 64, "4:s64")])
def test_the_marker_names_the_count_only_over_one(layout: int, shards: int, value: str) -> None:
    assert marker_value(layout, shards) == value
    assert parse_marker(value) == (layout, shards)


@pytest.mark.parametrize("value", ["", "0", "03", "3:s0", "3:s", "3:2", "s2", "3:s2 ", "3:s-1"])
def test_a_marker_of_neither_form_parses_to_nothing(value: str) -> None:
    assert parse_marker(value) is None
