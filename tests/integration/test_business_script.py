"""The batch script on a real redis-server and in the simulator, where the same Lua text runs over the
simulated keyspace (tests/sim/lua_redis.py): the same generated batches (every section of the payload,
labels over their caps, the writer's lineage, offsets with topic IDs, conflicts, values planted by
someone else) get the same replies and leave the same keyspace, key by key (type, value, expiry); a
stored value the script would fail on makes both refuse the batch whole. Command by command, the
keyspace is held to Redis in tests/integration/test_lua_keyspace.py."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as redis_async

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from streams.local.redis_server import LocalRedis
from streams.local.workload import raw_event
from tables.delta import Delta
from tables.keys import ORGS, USERS, WINDOW_DAYS
from tables.script import APPLY_LUA
from tables.snapshot import active_in_window
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.integration.keyspace_diff import SimClient, assert_same_keyspace, own_server, real_client, same_outcome
from tests.sim.lua_redis import Keyspace, Scripts

pytestmark = pytest.mark.integration

NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z
DAY_MS = 86_400_000
TTL_TOLERANCE_MS = 3_000  # the two set their expiries a few milliseconds apart on the wall clock
CAPS = {"org_id": 3, "provider": 2, "model": 2}  # small, so that label admission runs over its caps


class Rec:
    def __init__(self, value: bytes) -> None:
        self.value, self.offset, self.timestamp, self.partition = value, 0, NOW_MS, 0


server = own_server("redis-business-script")
real = real_client  # the fixture, under the name the tests ask for


# ---- generated batches through RedisStore, on both ------------------------------------------------------
def _delta(rng: random.Random, now: int, calendar: DayCalendar, seen: set[tuple[str, str, int]]) -> Delta:
    ctx = FoldContext(calendar, now, 2, DAY_MS, 65536)
    delta, events = Delta(), []
    for _ in range(rng.randint(0, 30)):
        ts = now - rng.randint(0, 35) * DAY_MS - rng.randint(0, 3_600_000)
        if rng.random() < 0.1:
            ts = now + rng.randint(0, DAY_MS - 1)
        org, user = f"o{rng.randint(1, 5)}", f"u{rng.randint(1, 9)}"
        extra = {"provider": rng.choice(["openai", "anthropic", "mistral"]), "model": rng.choice("abc")}
        events.append(raw_event(org, user, ts, kwh=rng.choice([0.5, 1e-9, 3.25]), co2_kg=1e-9, **extra))
        if ts >= calendar.oldest_kept_start_ms(now, WINDOW_DAYS):
            seen.add((org, user, calendar.today_index(ts)))
    if rng.random() < 0.2:
        events.append(b"not json")
    fold_raw(delta, "raw", [Rec(e) for e in events], ctx)
    fold_enriched(delta, "enriched", [Rec(e) for e in events[::2]], ctx)
    return delta


def _moves(rng: random.Random, stored: dict[int, int]) -> list[OffsetMove]:
    moves = []
    for part in rng.sample(range(3), rng.randint(0, 3)):
        expected = stored.get(part)
        if rng.random() < 0.1:  # a stale writer: the script refuses the batch whole
            expected = (expected or 0) + rng.choice([-1, 1])
        moves.append(OffsetMove("raw", part, expected, (expected or 0) + rng.randint(1, 40), topic_id="raw-id"))
    return moves


def _plant(rng: random.Random, client: redis_sync.Redis, keyspace: Keyspace, payload: dict[str, Any]) -> str:
    """Someone else's value where the batch writes, on both: the batch must be refused whole by both."""
    targets = [("int", h[0], h[1]) for h in payload["hincr"]] + [("max", m[0], m[1]) for m in payload["hmax"]]
    targets += [("type", s[0], "") for s in payload["sadd"]]
    kind, key, field = (str(x) for x in rng.choice(targets))
    if kind == "type":
        client.set(key, "a string")
        keyspace.call("SET", key, "a string")
        return key
    value = rng.choice(["x", "1.5", "+1", "007", "9" * 19, " 1"]) if kind == "int" else "not a number"
    client.hset(key, field, value)
    keyspace.call("HSET", key, field, value)
    return key


@pytest.mark.parametrize("seed", range(6))
def test_generated_batches_leave_the_same_keyspace_on_redis_and_in_the_simulator(
    server: LocalRedis, real: redis_sync.Redis, seed: int
) -> None:
    asyncio.run(_compare(server.url, real, seed))


async def _compare(url: str, sync: redis_sync.Redis, seed: int) -> None:
    rng = random.Random(seed)
    client = redis_async.from_url(url, decode_responses=True)
    keyspace = Keyspace(time.time)
    stores = [
        RedisStore(c, "diff", days_kept=2, label_caps=dict(CAPS), seen_cache_entries=50)  # type: ignore[arg-type]
        for c in (client, SimClient(keyspace))
    ]
    stores[1]._lineage_key = stores[0]._lineage_key  # the one random part of a store: the same on both
    stored: dict[int, int] = {}
    seen: set[tuple[str, str, int]] = set()
    calendar = DayCalendar(ZoneInfo("Europe/Paris"))
    outcomes: set[str] = set()
    try:
        for step in range(40):
            now = NOW_MS + step * 3 * 3_600_000  # writes move forward over five days
            delta, moves = _delta(rng, now, calendar, seen), _moves(rng, stored)
            planted = None
            if rng.random() < 0.15:  # Redis lost this writer's latest writes: it must send in full
                sync.delete(stores[0]._lineage_key)
                keyspace.call("DEL", stores[0]._lineage_key)
            elif rng.random() < 0.25 and (delta.processed or delta.users):
                planted = _plant(rng, sync, keyspace, stores[0].build_payload(delta, moves))
            got = []
            for store in stores:
                try:
                    await store.apply(delta, moves)
                    got.append("applied")
                except Exception as exc:
                    got.append(f"{type(exc).__name__}: {exc}")
            assert got[0] == got[1], (seed, step, got)
            outcomes.add(got[0].split(":")[0])
            assert_same_keyspace(sync, keyspace, (seed, step))
            if got[0] == "applied":
                stored.update({m.partition: m.next_offset for m in moves})
            if planted is not None:
                sync.delete(planted)
                keyspace.call("DEL", planted)
        today = calendar.today_index(NOW_MS + 39 * 3 * 3_600_000)
        for subject, days in ((USERS, 7), (USERS, WINDOW_DAYS), (ORGS, WINDOW_DAYS)):
            pairs: dict[int, dict[str, str]] = {
                day: await client.hgetall(stores[0].keys.window_pairs(subject, day))  # type: ignore[misc]
                for day in range(today - WINDOW_DAYS + 1, today + 1)
            }
            counted = active_in_window(pairs, today, days)
            assert counted == active_in_window(
                {d: keyspace.data.get(stores[0].keys.window_pairs(subject, d), {}) for d in pairs}, today, days
            )
            assert counted > 0
        assert "applied" in outcomes and len(outcomes) > 1, outcomes  # refusals were met, not only writes
    finally:
        await client.aclose()


@pytest.mark.parametrize("batch_failing", ["invalid_value", "overflow"])
def test_a_batch_over_a_bad_stored_value_is_refused_whole_on_both(real: redis_sync.Redis, batch_failing: str) -> None:
    """A counter the batch increments holds what HINCRBY refuses: the script checks before its first write,
    so both refuse the batch with reply 4 and write nothing (on a script without the check, Redis would
    keep what it wrote first: tests/integration/test_lua_keyspace.py shows the keyspace does that too)."""
    scripts = Scripts(Keyspace(time.time))
    store = RedisStore(SimClient(Keyspace(time.time)), "diff", days_kept=2)  # type: ignore[arg-type]
    delta = Delta()
    delta.processed["raw"] += 3
    payload = store.build_payload(delta, [OffsetMove("raw", 0, None, 3)])
    payload["lineage"] = None
    key, field = payload["hincr"][0][0], payload["hincr"][0][1]  # type: ignore[index]
    value = "12abc" if batch_failing == "invalid_value" else str(2**63 - 2)
    real.hset(key, field, value)
    scripts.keyspace.call("HSET", key, field, value)
    args = [orjson.dumps(payload)]
    same_outcome(real, scripts, APPLY_LUA, [store.keys.offsets], args)
    assert real.eval(APPLY_LUA, 1, store.keys.offsets, *args) == [4, key, field]
    assert_same_keyspace(real, scripts.keyspace, batch_failing)
