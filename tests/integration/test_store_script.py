"""The batch script on a real redis-server: it writes everything or nothing, and no total overflows."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from streams.local.redis_server import LocalRedis
from tables.delta import NANO, Delta, add
from tables.keys import AMOUNT_BASE, REMAINDER_SUFFIX, Keys, offset_field
from tables.store import RedisStore
from tables.writes import Conflict, OffsetMove, PartialWrite, ScriptFailed, WrongKeyType
from tests.integration.redis_io import apply_batch

pytestmark = pytest.mark.integration
DAY = "2026-11-27"


def _kwh_delta(org: str, nano: int) -> Delta:
    delta = Delta()
    delta.processed["enriched"] += 1
    delta.kwh_nano[DAY] = Counter({org: nano})
    return delta


def _snapshot(client: redis_sync.Redis) -> dict[str, object]:
    return {str(key): client.dump(key) for key in sorted(client.keys("*"))}


@pytest.fixture
def redis_home(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis").start(keep_data=False)
    yield server
    server.stop()


def test_remainders_carry_and_totals_stay_exact(redis_home: LocalRedis) -> None:
    client = redis_sync.Redis.from_url(redis_home.url, decode_responses=True)
    amounts = [999 * NANO + 999_999_999, 1, 1000 * NANO, 123_456_789] * 25  # carries on most writes
    for i, n in enumerate(amounts):
        apply_batch(redis_home.url, _kwh_delta("o", n), [OffsetMove("enriched", 0, i or None, i + 1)])
    key = Keys("s").day(DAY, "kwh")
    whole, rest = int(client.hget(key, "o")), int(client.hget(key + REMAINDER_SUFFIX, "o"))  # type: ignore[arg-type]
    assert 0 <= rest < AMOUNT_BASE
    assert whole * AMOUNT_BASE + rest == sum(amounts)


def test_a_refused_or_failing_write_changes_nothing(redis_home: LocalRedis) -> None:
    client = redis_sync.Redis.from_url(redis_home.url, decode_responses=True)
    apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, None, 5)])
    before = _snapshot(client)
    with pytest.raises(Conflict):  # the batch claims to start at 3, the stored offset is 5
        apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 3, 9)])
    assert _snapshot(client) == before
    activity = Keys("s").activity("org_id")
    client.set(activity, "not a hash")  # something else wrote one of the batch's keys
    before = _snapshot(client)
    with pytest.raises(WrongKeyType):
        apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9)])
    assert _snapshot(client) == before, "a refused batch must write nothing, offsets included"
    client.delete(activity)
    client.config_set("maxmemory", "1")  # over the limit: Redis refuses the script before it starts
    before = _snapshot(client)
    with pytest.raises(ResponseError, match="maxmemory"):
        apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9)])
    client.config_set("maxmemory", "0")
    assert _snapshot(client) == before


async def _load_stored(
    url: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int | None, str | None]]:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        return await RedisStore(client, "s", days_kept=2).load_stored(partitions)
    finally:
        await client.aclose()


def test_the_topic_id_moves_with_the_offset_or_not_at_all(redis_home: LocalRedis) -> None:
    """The ID is checked like the offset: a write that expects another topic's ID writes nothing."""
    client = redis_sync.Redis.from_url(redis_home.url, decode_responses=True)
    url = redis_home.url
    apply_batch(url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, None, 5, "A", None)])
    assert asyncio.run(_load_stored(url, [("enriched", 0), ("enriched", 1)])) == {
        ("enriched", 0): (5, "A"),
        ("enriched", 1): (None, None),
    }
    before = _snapshot(client)
    with pytest.raises(Conflict, match="enriched:0:id"):  # the writer thinks no ID is stored yet
        apply_batch(url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9, "B", None)])
    assert _snapshot(client) == before
    # The topic was re-created: offset and ID move together, from the old topic's to the new one's.
    apply_batch(url, Delta(), [OffsetMove("enriched", 0, 5, 0, "B", "A")])
    assert asyncio.run(_load_stored(url, [("enriched", 0)])) == {("enriched", 0): (0, "B")}


def _users_delta(day: str, users: list[str]) -> Delta:
    from datetime import date

    from tables.delta import pair

    delta = Delta(today_index=date.fromisoformat(day).toordinal())
    delta.processed["raw"] += len(users)
    delta.orgs[day] = {"o"}
    delta.users[day] = {pair("o", u) for u in users}
    add(delta.ingested, ("o", "p"), len(users))
    return delta


def test_members_written_before_are_left_out_until_redis_loses_a_write(redis_home: LocalRedis) -> None:
    """The store leaves out members it wrote already; when Redis lost its writes (a restore, a flush), the
    script refuses the trimmed batch by its lineage key and the store sends it in full."""
    client = redis_sync.Redis.from_url(redis_home.url, decode_responses=True)
    users_key = Keys("s").day(DAY, "users")

    async def scenario() -> list[int]:
        aclient = aioredis.from_url(redis_home.url, decode_responses=True)
        store = RedisStore(aclient, "s", days_kept=2, seen_cache_entries=100)
        sizes = []
        try:
            sizes.append(await _user_set_calls(client, store, _users_delta(DAY, ["u1", "u2"]), None, 2))
            sizes.append(store.seen.size)  # u1, u2 and the org
            sizes.append(await _user_set_calls(client, store, _users_delta(DAY, ["u1", "u2"]), 2, 4))
            # Redis loses those writes (as a restore from before them would), but keeps raw:0's offset.
            client.delete(users_key, *client.keys("*:seen:*"))
            sizes.append(await _user_set_calls(client, store, _users_delta(DAY, ["u1"]), 4, 5))
            sizes.append(store.seen.size)
        finally:
            await aclient.aclose()
        return sizes

    first, learnt, known, after_loss, relearnt = asyncio.run(scenario())
    assert first == 1 and learnt == 3
    assert known == 0, "known members must not be sent again"
    assert after_loss == 1
    assert client.smembers(users_key) == {"1:ou1"}, "after the lost writes the batch must be sent in full"
    assert relearnt == 2  # the cache was emptied, then learnt u1 and the org again


async def _user_set_calls(
    client: redis_sync.Redis, store: RedisStore, delta: Delta, start: int | None, end: int
) -> int:
    """Apply a batch and count the script's SMISMEMBER calls: one per chunk of users the batch sends."""

    def calls() -> int:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_smismember", {}).get("calls", 0))  # type: ignore[union-attr]

    before = calls()
    await store.apply(delta, [OffsetMove("raw", 0, start, end)])
    return calls() - before


def test_a_script_stopped_halfway_refuses_every_batch_until_its_marker_is_deleted(redis_home: LocalRedis) -> None:
    """What no check before the first write can foresee: a Redis user allowed the checks' commands but
    not EXPIRE, which the batch runs after its first writes. Redis keeps those writes; the marker they
    leave makes every later batch a refusal instead of a second count of them."""
    admin = redis_sync.Redis.from_url(redis_home.url, decode_responses=True)
    keys = Keys("s")
    apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, None, 5)])
    admin.acl_setuser(
        "limited", enabled=True, passwords=["+pw"], keys=["*"], categories=["+@all"], commands=["-expire"]
    )
    limited = redis_home.url.replace("redis://", "redis://limited:pw@")
    kwh = keys.day(DAY, "kwh")
    assert admin.hget(kwh, "o") == "1" and admin.get(keys.writing) is None
    with pytest.raises(ScriptFailed) as failed:
        apply_batch(limited, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9)])
    assert "can't run this command" in failed.value.detail
    assert admin.hget(kwh, "o") == "2", "Redis keeps what the script wrote before its error"
    assert admin.hget(keys.offsets, offset_field("enriched", 0)) == "5"
    assert admin.get(keys.writing) == f"{offset_field('enriched', 0)} 5>9"
    stopped = _snapshot(admin)
    for url in (limited, redis_home.url):  # whoever writes next, with every permission or not
        with pytest.raises(PartialWrite) as raised:
            apply_batch(url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9)])
        assert _snapshot(admin) == stopped, "a batch after one stopped halfway must write nothing"
    assert raised.value.key == keys.writing and "5>9" in raised.value.detail
    admin.delete(keys.writing)  # the operator's choice (RUNBOOK.md): the batch written again, whole
    apply_batch(redis_home.url, _kwh_delta("o", NANO), [OffsetMove("enriched", 0, 5, 9)])
    assert admin.hget(kwh, "o") == "3" and admin.hget(keys.offsets, offset_field("enriched", 0)) == "9"
    assert admin.get(keys.writing) is None
