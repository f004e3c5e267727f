"""The scrape's one-script read on a real redis-server: the same replies a MULTI/EXEC pipeline gives,
for any label value and field lists longer than one HMGET chunk, and a whole 600-org table read back
with exact values and sums."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as redis_async
from redis.exceptions import ResponseError

from bench.targets import _seed_orgs
from streams.local.redis_server import LocalRedis
from tables.keys import Keys
from tables.labels import OTHER
from tables.reads import READ_LUA, Reads
from tables.snapshot import decode
from tables.table_reads import consistent_tables, label_members, read_tables

pytestmark = pytest.mark.integration

HOSTILE = ["org_a", 'org "quoted"', "back\\slash", "new\nline", "nul\x00byte", "ünïcødé 組織 🌱", OTHER, "1", "[]"]


async def _compare(url: str) -> None:
    client = redis_async.from_url(url, decode_responses=True)
    p = f"reads-cmp-{time.monotonic_ns()}:"  # the session's Redis is shared: keys of this test only
    many = [f"f{i}" for i in range(2_500)]  # beyond one HMGET chunk (1,000 fields)
    await client.hset(p + "h:hostile", mapping={v: f"value of {v}" for v in HOSTILE[::2]})
    await client.hset(p + "h:many", mapping={f: str(i) for i, f in enumerate(many) if i % 3})
    await client.sadd(p + "s", *HOSTILE)
    reads, pipe = Reads(), client.pipeline(transaction=True)
    for r in (reads, pipe):
        r.hgetall(p + "h:hostile")
        r.hgetall(p + "h:absent")
        r.hmget(p + "h:hostile", HOSTILE)
        r.hmget(p + "h:many", many)
        r.hmget(p + "h:absent", HOSTILE)
        r.scard(p + "s")
        r.scard(p + "s:absent")
        r.hlen(p + "h:many")
    got = await reads.execute(client)
    want = await pipe.execute()
    assert got == want
    assert got[2][HOSTILE.index("nul\x00byte")] == "value of nul\x00byte"
    assert got[3][:4] == [None, "1", "2", None] and len(got[3]) == 2_500
    empty = Reads()
    empty.hmget(p + "h:many", [])
    assert await empty.execute(client) == [[]]
    await client.aclose()


def test_one_script_reads_what_multi_exec_reads(redis_server: LocalRedis) -> None:
    asyncio.run(_compare(redis_server.url))


async def _refuses(url: str) -> None:
    client = redis_async.from_url(url, decode_responses=True)
    script = client.register_script(READ_LUA)
    with pytest.raises(ResponseError, match="unknown read"):
        await script(keys=["k"], args=["D", "[]", '["k"]'])
    # The shebang's no-writes flag: Redis itself refuses a write from this script body.
    body = READ_LUA.replace("redis.call('SCARD', names[i])", "redis.call('SADD', names[i], 'x')")
    assert body != READ_LUA
    writer = client.register_script(body)
    with pytest.raises(ResponseError, match="not allowed from read-only scripts"):
        await writer(keys=["k"], args=["S", "[]", '["k"]'])
    await client.aclose()


def test_the_read_script_cannot_write(redis_server: LocalRedis) -> None:
    asyncio.run(_refuses(redis_server.url))


async def _whole_table(url: str) -> None:
    app_id = f"reads-{time.monotonic_ns()}"
    orgs = 600  # beyond the default cap of 500 labelled orgs
    await _seed_orgs(url, app_id, orgs)
    client = redis_async.from_url(url, decode_responses=True)
    keys = Keys(app_id)
    members = await label_members(client, keys)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    snap = decode(await read_tables(client, keys, today, members), "raw")
    await client.aclose()
    labelled = sorted(members["org_id"])
    assert len(labelled) == 500
    calls_each = {f"org_{i:06d}": i + 1 for i in range(orgs)}  # per org and provider (see _seed_orgs)
    for org in labelled:
        assert snap.ingested[(org, "openai")] == calls_each[org]
        assert snap.tokens[(org, "out")] == calls_each[org] + 1
    everything: dict[str, Any] = {
        "ingested": sum(snap.ingested.values()),
        "calls": sum(snap.calls.values()),
        "tokens_in": sum(n for (_, d), n in snap.tokens.items() if d == "in"),
        "users": sum(snap.org_active_users.values()),
    }
    total = sum(calls_each.values())
    assert everything == {"ingested": 3 * total, "calls": 3 * total, "tokens_in": total, "users": orgs}
    assert snap.ingested[(OTHER, "openai")] == sum(n for org, n in calls_each.items() if org not in members["org_id"])
    assert snap.active_orgs == orgs and snap.folded["org_id"] == orgs - 500
    assert sum(snap.kwh.values()) == pytest.approx(sum(1000 + i for i in range(orgs)) / 1e9)


def test_a_600_org_table_reads_back_exactly(redis_server: LocalRedis) -> None:
    asyncio.run(_whole_table(redis_server.url))


async def _admitted_between_reads(url: str) -> None:
    app_id = f"reads-race-{time.monotonic_ns()}"
    await _seed_orgs(url, app_id, 3)
    client = redis_async.from_url(url, decode_responses=True)
    keys = Keys(app_id)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    # The label sets as a scrape read them just before a write admitted these orgs: none of them yet.
    before = await label_members(client, keys) | {"org_id": set()}
    raw = await read_tables(client, keys, today, before)
    assert raw.members_stale
    providers = ("anthropic", "google", "openai")  # _seed_orgs: org i made i + 1 calls with each
    assert decode(raw, "raw").ingested == dict.fromkeys(((OTHER, p) for p in providers), 6), "the race"
    raw = await consistent_tables(client, keys, today, before)
    await client.aclose()
    assert not raw.members_stale
    snap = decode(raw, "raw")
    labelled = {key: n for key, n in snap.ingested.items() if n}
    assert labelled == {(f"org_{i:06d}", p): i + 1 for i in range(3) for p in providers}


def test_values_admitted_between_the_label_read_and_the_table_read_keep_their_series(
    redis_server: LocalRedis,
) -> None:
    """A scrape racing the write that admits new label values must not show them under "__other__" (which
    would then go down at the next scrape: a counter reset to Prometheus)."""
    asyncio.run(_admitted_between_reads(redis_server.url))
