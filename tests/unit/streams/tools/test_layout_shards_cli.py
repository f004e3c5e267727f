"""`python -m streams.tools.layout status` on sharded state (STREAMS_REDIS_SHARDS), over the simulated
keyspace; the placement warnings of a Redis Cluster from the shards' primaries. The real cluster's
primaries: tests/integration/test_redis_cluster.py."""

from __future__ import annotations

import pytest

from streams import clients
from streams.tools.layout import main as layout_cli
from streams.tools.shard_status import Place, crowding
from tables.layout import marker_key
from tables.shards import shard_tag
from tests.unit.tables.layout_redis import APP, LayoutRedis, layout_redis


def run(monkeypatch, capsys, redis: LayoutRedis, shards: int) -> tuple[int, list[str], str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(clients, "redis_client", lambda settings: redis)
    monkeypatch.setenv("STREAMS_REDIS_SHARDS", str(shards))
    code = layout_cli(["status", "--app-id", APP])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_status_lists_each_shard_its_state_and_a_partial_write(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), "3:s3")
    redis.keyspace.call("HSET", "{app:s0}:v3:offsets", "raw:0", "9")
    redis.keyspace.call("HSET", "{app:s1}:v3:watermarks", "raw:0", "9")
    redis.keyspace.call("SET", "{app:s1}:v3:watermarks:writing", "raw:0 members 9>14")
    redis.keyspace.call("HSET", "{app:s5}:v3:offsets", "raw:5", "3")  # left by a count of 6
    code, out, err = run(monkeypatch, capsys, redis, shards=2)
    assert code == 1, "a partial write refuses writes: a problem"
    assert out[:3] == [
        "app id app: this release writes key layout 3",
        "layout in use (marker {app}:layout): 3:s3 (layout 3 in 3 shards)",
        "STREAMS_REDIS_SHARDS here is 2, the state is kept in 3 shard(s): replicas set so refuse it "
        "(RUNBOOK.md, A shard count refused)",
    ]
    assert out[3:] == [
        "shard 0: hash tag {app:s0}, slot 11382 (state present)",
        "shard 1: hash tag {app:s1}, slot 15447 (state present)",
        "shard 2: hash tag {app:s2}, slot 3124 (no state yet)",
    ]
    problems = err.splitlines()
    assert problems[0].startswith("shard(s) 5 hold state beside the 3 shard(s) in use: left by another shard count")
    assert problems[1] == (
        "partial write: {app:s1}:v3:watermarks:writing holds 'raw:0 members 9>14': every batch's member writes "
        "(shard 1) refused until an operator repairs it (RUNBOOK.md, StateWritesRefused)"
    )
    assert problems[2].startswith("warning: all 3 shards sit on one Redis server: sharding spreads nothing")
    assert len(problems) == 3


def test_status_of_one_shard_names_its_tag_and_its_own_partial_write(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), "3")
    redis.keyspace.call("HSET", "{app}:v3:offsets", "raw:0", "9")
    code, out, err = run(monkeypatch, capsys, redis, shards=1)
    assert (code, err) == (0, "")
    assert out[1:] == [
        "layout in use (marker {app}:layout): 3",
        "layout 3: state present ({app}:v3:offsets)",
        "state hash tag {app}, slot 6805",
    ]
    redis.keyspace.call("SET", "{app}:v3:offsets:writing", "raw:0 9>12")
    redis.keyspace.call("SET", "{app:s1}:v3:offsets:writing", "raw:1 1>2")  # no shard of the state in use
    code, out, err = run(monkeypatch, capsys, redis, shards=1)
    assert code == 1 and err.splitlines() == [
        "partial write: {app}:v3:offsets:writing holds 'raw:0 9>12': every batch write refused until an operator "
        "repairs it (RUNBOOK.md, StateWritesRefused)"
    ]


def test_before_the_first_start_status_shows_where_the_setting_puts_the_shards(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(monkeypatch, capsys, layout_redis(), shards=2)
    assert (code, out[1]) == (0, "layout in use (marker {app}:layout): none yet")
    assert out[2:] == [
        "shard 0: hash tag {app:s0}, slot 11382 (no state yet)",
        "shard 1: hash tag {app:s1}, slot 15447 (no state yet)",
    ]
    assert err.startswith("warning: all 2 shards sit on one Redis server")


@pytest.mark.parametrize(
    ("primaries", "crowded"),
    [
        (["a:1", "b:2", "c:3"], []),
        (["a:1", "b:2", "a:1"], [("0, 2", "a:1")]),
        (["a:1", "a:1", "b:2", "b:2", "c:3"], [("0, 1", "a:1"), ("2, 3", "b:2")]),
    ],
)
def test_a_primary_holding_two_shards_is_warned_of(primaries: list[str], crowded: list[tuple[str, str]]) -> None:
    found = [Place(k, shard_tag(APP, k), k, primary) for k, primary in enumerate(primaries)]
    warnings = crowding(found)
    assert [w.split(": ")[0] for w in warnings] == [f"shards {s} sit on one primary ({p})" for s, p in crowded]
    assert all("sharding spreads nothing between them" in w for w in warnings)


def test_one_shard_is_never_crowded() -> None:
    assert crowding([Place(-1, "{app}", 6805, "")]) == []
    assert crowding([Place(-1, "{app}", 6805, "a:1")]) == []
