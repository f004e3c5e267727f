"""Benchmark targets of the second set of business metrics: Redis memory per distinct user the rolling
windows keep, and each run's throughput against its own ceiling."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import date, timedelta

import redis as redis_sync
import redis.asyncio as redis_async

from streams.local.redis_server import LocalRedis
from tables.delta import Delta, pair
from tables.keys import WINDOW_DAYS
from tables.snapshot import active_in_window
from tables.store import RedisStore

# The documented bound (docs/business-metrics.md): Redis bytes per distinct user kept 30 days.
BYTES_PER_USER_BOUND = 120


def memory_per_window_user(redis: LocalRedis, users: int, batch: int = 5_000) -> str:
    """`users` distinct users, each active on 1 to 3 of the last 30 local days, written through the real
    batch script; Redis memory in use before and after, per user; the monthly count read back exactly."""
    client = redis_sync.Redis.from_url(redis.url)
    before = int(client.info("memory")["used_memory"])
    started = time.monotonic()
    monthly = asyncio.run(_write_users(redis.url, users, batch))
    seconds = time.monotonic() - started
    after = int(client.info("memory")["used_memory"])
    per_user = (after - before) / users
    ok = per_user <= BYTES_PER_USER_BOUND and monthly == users
    return (
        f"| Redis memory per distinct user kept 30 days ({users:,} users over 30 days, written in {seconds:.0f} s; "
        f"monthly actives read back: {monthly:,}) | {per_user:.0f} B/user ({(after - before) / 1e6:.0f} MB) | "
        f"≤ {BYTES_PER_USER_BOUND} B/user, exact | {'met' if ok else 'MISSED'} |"
    )


async def _write_users(url: str, users: int, batch: int) -> int:
    client = redis_async.from_url(url, decode_responses=True)
    app_id = f"mem30-{uuid.uuid4().hex[:6]}"
    store = RedisStore(client, app_id, days_kept=2)
    rng = random.Random(7)
    today = date.today()
    try:
        for start in range(0, users, batch):
            delta = Delta(today_index=today.toordinal())
            for i in range(start, min(start + batch, users)):
                member = pair(f"org_{i % 10_000}", f"user_{i}")
                for back in rng.sample(range(WINDOW_DAYS), rng.randint(1, 3)):
                    day = (today - timedelta(days=back)).isoformat()
                    # Only the windows' tables: the daily sets are the DAU's, measured elsewhere.
                    delta.window_only_users.setdefault(day, set()).add(member)
            await store.apply(delta, [])
        pipe = client.pipeline(transaction=False)
        days = range(today.toordinal() - WINDOW_DAYS + 1, today.toordinal() + 1)
        for index in days:
            pipe.hgetall(store.keys.window_pairs("u", index))
        pairs = dict(zip(days, await pipe.execute(), strict=True))
        return active_in_window(pairs, today.toordinal(), WINDOW_DAYS)
    finally:
        await client.aclose()
