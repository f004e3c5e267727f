"""The arithmetic, verdicts and tag placement of the sharded rows (bench/shard_rows.py)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from bench.shard_rows import (
    ShardRow,
    busiest_share,
    owner,
    share_verdict,
    spread_app_id,
    table,
    tag_owners,
)
from tables.shards import ShardKeys

# What `redis-cli --cluster create` gives three primaries.
THREE = [(0, 5460, "a"), (5461, 10922, "b"), (10923, 16383, "c")]


def _row(cpu: list[float], events: int = 100_000, shards: int = 3, name: str = "r") -> ShardRow:
    return ShardRow(name, len(cpu), shards, events, 2.0, 1.1, cpu)


@pytest.mark.parametrize(
    ("events", "cpu", "each", "busiest", "total", "saturates"),
    [
        (100_000, [1.4], [14.0], 14.0, 14.0, 71_429),
        (100_000, [0.5, 0.4, 0.6], [5.0, 4.0, 6.0], 6.0, 15.0, 166_667),
        (250_000, [1.0, 1.0, 1.0], [4.0, 4.0, 4.0], 4.0, 12.0, 250_000),
        (0, [1.0, 2.0], [0.0, 0.0], 0.0, 0.0, 0),  # nothing folded: no figure rather than a division by zero
    ],
)
def test_cpu_per_event_per_primary(
    events: int, cpu: list[float], each: list[float], busiest: float, total: float, saturates: int
) -> None:
    row = _row(cpu, events)
    assert row.us_per_event == pytest.approx(each)
    assert row.busiest_us == pytest.approx(busiest)
    assert row.total_us == pytest.approx(total)
    assert round(row.saturates_at) == saturates


@pytest.mark.parametrize(
    ("one", "sharded", "share"),
    [
        ([1.4], [0.5, 0.45, 0.4], 0.5 / 1.4),
        ([1.2], [0.4, 0.4, 0.4], 1 / 3),
        ([1.0], [1.0, 0.0, 0.0], 1.0),  # every shard's work on one primary: no gain
        ([0.0], [0.4], 0.0),
    ],
)
def test_busiest_primary_against_one_redis(one: list[float], sharded: list[float], share: float) -> None:
    assert busiest_share(_row(sharded), _row(one, shards=1)) == pytest.approx(share)


@pytest.mark.parametrize(
    ("share", "shards", "verdict"),
    [
        (0.33, 3, "met (≤ 0.42)"),
        (0.41, 3, "met (≤ 0.42)"),
        (0.43, 3, "MISSED (≤ 0.42)"),
        (0.0, 3, "MISSED (≤ 0.42)"),  # a row that measured nothing is no success
        (0.6, 2, "met (≤ 0.62)"),
        (0.65, 2, "MISSED (≤ 0.62)"),
        (0.9, 1, ""),
    ],
)
def test_share_verdict(share: float, shards: int, verdict: str) -> None:
    assert share_verdict(share, shards) == verdict


def test_table_sets_each_row_against_the_first() -> None:
    one = ShardRow("one Redis, one shard", 1, 1, 100_000, 5.0, 1.1, [1.2], "values equal the truth")
    same = ShardRow("one Redis, S = 3", 1, 3, 100_000, 5.0, 1.2, [1.5], "values equal the truth")
    cluster = ShardRow("cluster, S = 3", 3, 3, 100_000, 5.0, 1.2, [0.5, 0.4, 0.3], "values equal the truth")
    lines = table([one, same, cluster]).splitlines()
    assert len(lines) == 5
    assert "| 12.00 | 12.00 | 12.00 | 1.00 | 83,333 |" in lines[2]
    assert "| 15.00 | 15.00 | 15.00 | 1.25 | 66,667 |" in lines[3]  # one Redis holding 3 shards: no goal
    assert "| 5.00 / 4.00 / 3.00 | 5.00 | 12.00 | 0.42 met (≤ 0.42) | 200,000 |" in lines[4]


def test_owner_of_a_slot() -> None:
    assert [owner(THREE, s) for s in (0, 5460, 5461, 16383)] == ["a", "a", "b", "c"]
    with pytest.raises(ValueError, match="no primary serves slot 16383"):
        owner(THREE[:2], 16383)


@pytest.mark.parametrize(("ranges", "shards", "primaries"), [(THREE, 3, 3), (THREE, 2, 2), ([(0, 16383, "a")], 3, 1)])
def test_spread_app_id_puts_the_tags_on_distinct_primaries(
    ranges: list[tuple[int, int, str]], shards: int, primaries: int
) -> None:
    app_id = spread_app_id(ranges, shards, "bench")
    # Each shard's real keys, hashed as Redis does (the tag inside the braces): on distinct primaries.
    slots = [key_slot(ShardKeys(app_id, k).offsets.encode()) for k in range(shards)]
    assert len({owner(ranges, s) for s in slots}) == primaries
    assert tag_owners(ranges, app_id, shards) == [owner(ranges, s) for s in slots]
    assert app_id.startswith("bench-")


def test_spread_app_id_skips_names_whose_tags_collide() -> None:
    # fleet-0's first two shard tags hash into slots 0-5460 (CRC16, as Redis computes it); fleet-1's do not.
    assert tag_owners(THREE, "fleet-0", 3) == ["a", "a", "c"]
    assert tag_owners(THREE, "fleet-1", 3) == ["b", "c", "a"]
    assert spread_app_id(THREE, 3, "fleet") == "fleet-1"
    with pytest.raises(ValueError, match="no app id of 1 tried spreads 3 shards over 3 primaries"):
        spread_app_id(THREE, 3, "fleet", tries=1)
