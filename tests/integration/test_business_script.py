"""The batch script on a real redis-server equals its Python port in the simulator (tests/sim/redis.py):
the same random batches, folded from events spread over 35 days back and a day ahead, leave the same
tables, and the windows read from the real tables equal a brute-force count."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as redis_async

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from streams.local.redis_server import LocalRedis
from streams.local.workload import raw_event
from tables.delta import Delta
from tables.keys import ORGS, USERS, WINDOW_DAYS
from tables.snapshot import active_in_window
from tables.store import RedisStore
from tests.sim.redis import SimRedis

pytestmark = pytest.mark.integration

NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z
DAY_MS = 86_400_000


class Rec:
    def __init__(self, value: bytes) -> None:
        self.value, self.offset, self.timestamp, self.partition = value, 0, NOW_MS, 0


class _World:
    def check_write(self, payload: dict[str, Any]) -> None:
        return None


async def _dump(client: redis_async.Redis, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for key in client.scan_iter(match=prefix + "*"):
        kind = await client.type(key)
        if kind == "set":
            out[key] = set(await client.smembers(key))
        elif kind == "hash":
            out[key] = {f: v for f, v in (await client.hgetall(key)).items() if v != "0"}
    return out


def _plain(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        # The port leaves out what the simulator does not check: label admission and the newest times.
        if key.startswith(prefix) and ":labels:" not in key and not key.endswith(":last_ts"):
            out[key] = {f: v for f, v in value.items() if v != "0"} if isinstance(value, dict) else set(value)
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("seed", range(6))
def test_the_real_script_equals_its_port_and_counts_windows_exactly(workdir: Path, seed: int) -> None:
    redis = LocalRedis(workdir / f"redis-script-{seed}").start(keep_data=False)
    try:
        asyncio.run(_compare(redis.url, seed))
    finally:
        redis.stop()


async def _compare(url: str, seed: int) -> None:
    rng = random.Random(seed)
    client = redis_async.from_url(url, decode_responses=True)
    store = RedisStore(client, "diff", days_kept=2, label_caps={"org_id": 3, "provider": 2, "model": 2})
    sim = SimRedis(_World())  # type: ignore[arg-type]
    seen: set[tuple[str, str, int]] = set()
    calendar = DayCalendar(ZoneInfo("Europe/Paris"))
    try:
        for step in range(40):
            now = NOW_MS + step * 3 * 3_600_000  # writes move forward over five days
            ctx = FoldContext(calendar, now, 2, DAY_MS, 65536)
            delta = Delta()
            events = []
            for _ in range(rng.randint(1, 30)):
                ts = now - rng.randint(0, 35) * DAY_MS - rng.randint(0, 3_600_000)
                if rng.random() < 0.1:
                    ts = now + rng.randint(0, DAY_MS - 1)
                org, user = f"o{rng.randint(1, 5)}", f"u{rng.randint(1, 9)}"
                events.append(raw_event(org, user, ts, model=rng.choice(["a", "b", "c"]), kwh=0.5, co2_kg=1e-9))
                if ts >= calendar.oldest_kept_start_ms(now, WINDOW_DAYS):
                    seen.add((org, user, calendar.today_index(ts)))
            fold_raw(delta, "raw", [Rec(e) for e in events], ctx)
            fold_enriched(delta, "enriched", [Rec(e) for e in events[::2]], ctx)
            await store.apply(delta, [])
            sim.apply_payload(store.keys.offsets, store.build_payload(delta, []))
            today = calendar.today_index(now)
            got = _plain(await _dump(client, store.keys.prefix), store.keys.prefix)
            want = _plain(sim.data, store.keys.prefix)
            assert got == want, f"seed {seed} step {step}"
            pairs: dict[str, dict[int, dict[str, str]]] = {
                subject: {
                    day: await client.hgetall(store.keys.window_pairs(subject, day))  # type: ignore[misc]
                    for day in range(today - WINDOW_DAYS + 1, today + 1)
                }
                for subject in (USERS, ORGS)
            }
            for days in (7, WINDOW_DAYS):
                users = {(o, u) for o, u, d in seen if today - days < d <= today}
                assert active_in_window(pairs[USERS], today, days) == len(users), (seed, step, days)
                assert active_in_window(pairs[ORGS], today, days) == len({o for o, _ in users}), (seed, step)
    finally:
        await client.aclose()
