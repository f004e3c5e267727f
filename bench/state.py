"""State size in Redis: bytes per distinct user per day, per org, per label value, and what never expires.

python -m bench.state                         # 1,000,000 users, 100,000 orgs, 30 days
python -m bench.state --users 100000 --orgs 10000

Redis is seeded through the store's own write (RedisStore.apply) with synthetic batches, as the sidecar
writes them, rather than by producing events: the bytes are the same, the run takes seconds. Sizes are
Redis's `used_memory` before and after (allocator overhead included), and MEMORY USAGE per key for the
split between keys that expire (per-day keys) and keys that do not, and for a label value's few bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis_async
from redis.exceptions import RedisError

from streams.local.redis_server import LocalRedis
from tables.delta import Delta, add, pair
from tables.store import RedisStore

USERS_PER_WRITE = 100_000
ORGS_PER_WRITE = 10_000  # a script of 100,000 orgs ran past Redis's 5 s busy threshold on a loaded machine
DAYS = 30


@dataclass
class StateSizes:
    users: int
    orgs: int
    label_values: int
    bytes_per_user_day: float
    set_bytes_per_user: float  # MEMORY USAGE of the day's user set alone, per member
    bytes_per_org_first_day: float
    bytes_per_org_day_after: float
    bytes_per_label_value: float
    lasting_after_day_1: int
    lasting_after_last_day: int
    lasting_with_churn: int
    churn_orgs_per_day: int
    days: int


def user_id(i: int) -> str:
    return f"user-{i:011d}"  # 16 characters, as a short opaque id


def org_id(i: int) -> str:
    return f"org-{i:08d}"


def day_name(d: int) -> str:
    return f"2026-01-{d + 1:02d}" if d < 31 else f"2026-02-{d - 30:02d}"


def org_delta(orgs: range, day: str, model: str = "gpt-4o") -> Delta:
    """One raw and one enriched event's worth for each org: what an org adds on a day it is active."""
    delta = Delta()
    for i in orgs:
        org = org_id(i)
        add(delta.ingested, (org, "openai"), 1)
        add(delta.calls, (org, model), 1)
        delta.orgs.setdefault(day, set()).add(org)
        add(delta.kwh_nano.setdefault(day, {}), org, 1_000 + i)
        add(delta.co2_nano.setdefault(day, {}), org, 500 + i)
    delta.processed["events.raw"] += len(orgs)
    return delta


def user_delta(users: range, orgs: int, day: str) -> Delta:
    delta = Delta()
    delta.users[day] = {pair(org_id(i % orgs), user_id(i)) for i in users}
    return delta


async def apply_orgs(store: RedisStore, orgs: range, day: str) -> None:
    for start in range(orgs.start, orgs.stop, ORGS_PER_WRITE):
        await store.apply(org_delta(range(start, min(orgs.stop, start + ORGS_PER_WRITE)), day), [])


async def _used(client: redis_async.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def lasting_bytes(client: redis_async.Redis, prefix: str) -> int:
    """MEMORY USAGE summed over the keys under `prefix` that have no time to live."""
    total = 0
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        if await client.ttl(key) == -1:
            total += int(await client.memory_usage(key, samples=0) or 0)
    return total


async def measure(url: str, users: int, orgs: int, label_values: int, churn: int) -> StateSizes:
    client = redis_async.from_url(url, decode_responses=True)
    store = RedisStore(client, "state-bench", days_kept=2, label_caps={"org_id": 500, "provider": 100, "model": 100})
    prefix = store.keys.prefix
    try:
        await client.flushdb()
        day0 = day_name(0)
        before = await _used(client)
        await apply_orgs(store, range(orgs), day0)
        per_org_first = (await _used(client) - before) / orgs
        before = await _used(client)
        await apply_orgs(store, range(orgs), day_name(1))
        per_org_next = (await _used(client) - before) / orgs
        before = await _used(client)
        for start in range(0, users, USERS_PER_WRITE):
            await store.apply(user_delta(range(start, min(users, start + USERS_PER_WRITE)), orgs, day0), [])
        per_user = (await _used(client) - before) / users
        per_member = int(await client.memory_usage(store.keys.day(day0, "users"), samples=0) or 0) / users
        # A label value only adds to keys that never expire; used_memory is too coarse for a few kB.
        before = await lasting_bytes(client, prefix)
        for v in range(label_values):  # each new model seen at one org
            await store.apply(org_delta(range(v % orgs, v % orgs + 1), day0, model=f"model-{v:06d}"), [])
        lasting_1 = await lasting_bytes(client, prefix)
        per_label = (lasting_1 - before) / label_values
        for d in range(2, DAYS):
            await apply_orgs(store, range(orgs), day_name(d))
        lasting_last = await lasting_bytes(client, prefix)
        for d in range(DAYS):  # the same 30 days again, each with `churn` orgs never seen before
            await store.apply(org_delta(range(orgs + d * churn, orgs + (d + 1) * churn), day_name(d)), [])
        lasting_churn = await lasting_bytes(client, prefix)
    finally:
        with contextlib.suppress(RedisError):  # the run's own error matters more than the clean-up's
            await client.flushdb()
        await store.close()
    return StateSizes(
        users, orgs, label_values, per_user, per_member, per_org_first, per_org_next, per_label,
        lasting_1, lasting_last, lasting_churn, churn, DAYS,
    )  # fmt: skip


def table(s: StateSizes) -> str:
    mb = 1e6
    rows = [
        "| what | measured | at this scale |",
        "|---|---:|---:|",
        f"| a distinct user on a day (member of that day's set; kept {2 + 1} days) | "
        f"{s.bytes_per_user_day:.0f} B ({s.set_bytes_per_user:.0f} B by MEMORY USAGE of the set) | "
        f"{s.users:,} users: {s.users * s.bytes_per_user_day / mb:,.0f} MB per day |",
        f"| an org, first day (its hash, activity, that day's org set, kWh and CO2 fields) | "
        f"{s.bytes_per_org_first_day:.0f} B | {s.orgs:,} orgs: {s.orgs * s.bytes_per_org_first_day / mb:,.0f} MB |",
        f"| an org, each further active day (per-day keys only) | {s.bytes_per_org_day_after:.0f} B | "
        f"{s.orgs:,} orgs: {s.orgs * s.bytes_per_org_day_after / mb:,.0f} MB per day |",
        f"| a label value (a new model at one org: hash field and activity) | {s.bytes_per_label_value:.0f} B | "
        f"{s.label_values:,} values: {s.label_values * s.bytes_per_label_value / mb:,.1f} MB |",
        f"| keys without expiry after day 1 → after day {s.days} (same orgs every day) | "
        f"{s.lasting_after_day_1 / mb:,.1f} MB → {s.lasting_after_last_day / mb:,.1f} MB | "
        f"growth {(s.lasting_after_last_day - s.lasting_after_day_1) / mb:+,.2f} MB over {s.days - 1} days |",
        f"| the same with {s.churn_orgs_per_day:,} new orgs a day for {s.days} days | "
        f"{s.lasting_with_churn / mb:,.1f} MB | "
        f"{(s.lasting_with_churn - s.lasting_after_last_day) / (s.days * s.churn_orgs_per_day):.0f} B per new org |",
    ]
    return "\n".join(rows)


def section(workdir: Path, redis_url: str | None, smoke: bool) -> str:
    users, orgs = (20_000, 2_000) if smoke else (1_000_000, 100_000)
    server = None
    if redis_url is None:
        server = LocalRedis(workdir / "state-redis").start(keep_data=False)
        redis_url = server.url
    try:
        sizes = asyncio.run(measure(redis_url, users, orgs, 1_000, churn=orgs // 100))
    finally:
        if server is not None:
            server.stop()
    head = (
        f"State size (seeded through RedisStore.apply, as the sidecar writes): {users:,} users "
        f"of 16-character ids over {orgs:,} orgs of 12-character ids, {DAYS} days."
    )
    return "\n".join([head, "", table(sizes)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--orgs", type=int, default=100_000)
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-state-"))
    server = LocalRedis(workdir / "redis").start(keep_data=False)
    try:
        sizes = asyncio.run(measure(server.url, args.users, args.orgs, 1_000, churn=args.orgs // 100))
    finally:
        server.stop()
    print(table(sizes))


if __name__ == "__main__":
    main()
