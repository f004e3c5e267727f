"""The targets beyond throughput: freshness, scrape time, restart to ready, memory."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import urllib.request
import uuid
from datetime import date
from functools import partial
from pathlib import Path

import orjson
import redis as redis_sync
import redis.asyncio as redis_async
from aiokafka import AIOKafkaProducer
from redis.asyncio.cluster import RedisCluster

from bench.procstat import peak_rss_mb
from bench.runners import Topics, processed, scrape_at, sidecar_env
from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.redis_server import LocalRedis
from streams.local.redis_topologies import LocalCluster
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import Truth
from tables.delta import Delta, add, pair
from tables.sharded_store import ShardedStore
from tables.store import RedisStore


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sidecar(
    workdir: Path, bootstrap: str, redis: LocalRedis | LocalCluster, raw: str, enriched: str, app_id: str, **extra: str
) -> SidecarProc:
    env = sidecar_env(bootstrap, redis, app_id, raw, enriched, **extra)
    return SidecarProc(workdir / f"{app_id}-{uuid.uuid4().hex[:4]}", env).start()


def freshness(workdir: Path, bootstrap: str, redis: LocalRedis, rate: int, seconds: float) -> str:
    """Produce-to-/metrics time at a steady offered load, from counts seen by a fast poller."""
    uid = uuid.uuid4().hex[:6]
    raw, enriched = f"fresh.raw.{uid}", f"fresh.enriched.{uid}"
    make_topics(bootstrap, [raw, enriched], partitions=8)
    t = Topics(bootstrap, raw, enriched, 0)
    proc = _sidecar(workdir, bootstrap, redis, raw, enriched, f"fresh-{uid}")
    seen: list[tuple[float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), processed(proc.scrape(), t)))
            time.sleep(0.02)

    try:
        proc.wait_ready(120)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        sent_at = asyncio.run(_produce_steady(bootstrap, raw, rate, seconds))
        wait_until(lambda: seen and seen[-1][1] >= len(sent_at), 60, what="freshness run folded")
        stop.set()
        poller.join()
    finally:
        stop.set()
        proc.stop()
    delays, j = [], 0
    for i, sent in enumerate(sent_at):
        while j < len(seen) and seen[j][1] < i + 1:
            j += 1
        if j < len(seen):
            delays.append(seen[j][0] - sent)
    p50, p99 = _pct(delays, 0.5), _pct(delays, 0.99)
    return (
        f"| freshness: produce to /metrics at {rate:,} events/s offered for {seconds:.0f} s | "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms | p99 ≤ 1 s | {'met' if p99 <= 1 else 'MISSED'} |"
    )


async def _produce_steady(bootstrap: str, topic: str, rate: int, seconds: float) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    sent_at: list[float] = []
    started = time.monotonic()
    body = {"org_id": "org_f", "user_id": "u", "provider": "openai", "model": "m", "tokens_in": 1, "tokens_out": 1}
    try:
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * rate) - len(sent_at)
            for _ in range(due):
                await producer.send(topic, orjson.dumps({**body, "ts": int(time.time() * 1000)}))
                sent_at.append(time.monotonic())
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


def scrape_time(
    workdir: Path,
    bootstrap: str,
    redis: LocalRedis | LocalCluster,
    orgs: int,
    scrapes: int,
    shards: int = 1,
    note: str = "",
    keyed_by_org: bool = False,
) -> str:
    """Render time of /metrics over HTTP with `orgs` orgs in every labelled family (in every shard)."""
    app_id = f"scrape-{uuid.uuid4().hex[:6]}"
    asyncio.run(_seed_shards(redis, app_id, orgs, shards, keyed_by_org))
    topics = f"scrape.raw.{app_id}", f"scrape.enriched.{app_id}"
    proc = _sidecar(workdir, bootstrap, redis, *topics, app_id, STREAMS_REDIS_SHARDS=str(shards))
    try:
        proc.wait_ready(120)
        wait_until(lambda: b"ecomind_daily_active_orgs" in proc.get("/metrics")[1], 30, what="exporter lease")
        times, size = [], 0
        for _ in range(scrapes):
            started = time.monotonic()
            with urllib.request.urlopen(proc.url + "/metrics", timeout=10) as resp:
                size = len(resp.read())
            times.append(time.monotonic() - started)
    finally:
        proc.stop()
    p99 = _pct(times, 0.99)
    return (
        f"| /metrics with {orgs:,} orgs{f', {note}' if note else ''} ({size / 1e6:.1f} MB, {scrapes} scrapes) | "
        f"p50 {statistics.median(times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms | p99 ≤ 100 ms | "
        f"{'met' if p99 <= 0.1 else 'MISSED'} |"
    )


async def _seed_orgs(url: str, app_id: str, orgs: int) -> None:
    store = RedisStore(redis_async.from_url(url, decode_responses=True), app_id, days_kept=2)
    await store.apply(_orgs_delta(range(orgs)), [])
    await store.close()


async def _seed_shards(
    redis: LocalRedis | LocalCluster, app_id: str, orgs: int, shards: int, keyed_by_org: bool = False
) -> None:
    if shards == 1 and isinstance(redis, LocalRedis):
        return await _seed_orgs(redis.url, app_id, orgs)
    client: redis_async.Redis = (
        RedisCluster("127.0.0.1", redis.nodes[0].port, decode_responses=True)  # type: ignore[assignment]
        if isinstance(redis, LocalCluster)
        else redis_async.from_url(redis.url, decode_responses=True)
    )
    if shards == 1:
        store = RedisStore(client, app_id, days_kept=2)
        await store.apply(_orgs_delta(range(orgs)), [])
        return await store.close()
    # Unkeyed producers spread every org's events over every partition, so every shard's read holds every
    # org: the scrape's most work. Keyed by org, an org's sums lie in one partition shard.
    sharded = ShardedStore(client, app_id, shards, days_kept=2)
    parts = {k: range(k, orgs, shards) if keyed_by_org else range(orgs) for k in range(shards)}
    await sharded.apply({k: _orgs_delta(part) for k, part in parts.items()}, [])
    await sharded.close()


def _orgs_delta(orgs: range) -> Delta:
    delta = Delta()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for i in orgs:
        org = f"org_{i:06d}"
        for provider, model in (("openai", "gpt-4o"), ("anthropic", "claude"), ("google", "gemini")):
            add(delta.ingested, (org, provider), i + 1)
            add(delta.calls, (org, model), i + 1)
        delta.orgs.setdefault(today, set()).add(org)
        delta.users.setdefault(today, set()).add(pair(org, "u"))
        add(delta.kwh_nano.setdefault(today, {}), org, 1000 + i)
        add(delta.co2_nano.setdefault(today, {}), org, 500 + i)
        # The second set's tables too (windows, tokens, energy by model), so the scrape reads them all.
        add(delta.tokens_in.setdefault(today, {}), org, i + 1)
        add(delta.tokens_out.setdefault(today, {}), org, i + 2)
        add(delta.model_kwh_nano.setdefault(today, {}), ("openai", f"model_{i % 150}"), 1000 + i)
        add(delta.model_co2_nano.setdefault(today, {}), ("openai", f"model_{i % 150}"), 500 + i)
    delta.today_index = date.fromisoformat(today).toordinal()
    return delta


def restart_to_ready(workdir: Path, t: Topics, redis: LocalRedis, truth: Truth | None, app_id: str) -> str:
    """kill -9 a sidecar whose tables hold the whole workload, restart it, time until ready and correct."""
    proc = _sidecar(workdir, t.bootstrap, redis, t.raw, t.enriched, app_id)
    proc.wait_ready(120)
    proc.kill()
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_ready(120)
        ready_s = time.monotonic() - started
        final = wait_until(
            partial(scrape_at, proc, t, t.total),
            120,
            interval_s=0.05,
            what="values after restart",
        )
        correct_s = time.monotonic() - started
        ok = truth is None or not truth.mismatches(final, t.raw, t.enriched)
    finally:
        proc.stop()
    return (
        f"| restart to ready after kill -9, {t.total:,} events in the tables (Redis) | ready {ready_s:.1f} s, "
        f"correct values {correct_s:.1f} s{'' if ok else ' (WRONG VALUES)'} | ≤ 10 s | "
        f"{'met' if correct_s <= 10 and ok else 'MISSED'} |"
    )


def memory_users(workdir: Path, bootstrap: str, redis: LocalRedis, users: int) -> str:
    uid = uuid.uuid4().hex[:6]
    raw, enriched = f"mem.raw.{uid}", f"mem.enriched.{uid}"
    make_topics(bootstrap, [raw, enriched], partitions=8)
    asyncio.run(_produce_users(bootstrap, raw, users))
    t = Topics(bootstrap, raw, enriched, users)
    proc = _sidecar(workdir, bootstrap, redis, raw, enriched, f"mem-{uid}")
    try:
        proc.wait_ready(120)
        m = wait_until(partial(scrape_at, proc, t, users), 900, 0.5, what="all users folded")
        assert proc.server is not None and proc.server.proc is not None
        rss = peak_rss_mb(proc.server.proc.pid)
        dau = m.get(("ecomind_daily_active_users", frozenset()), 0)
    finally:
        proc.stop()
    used = redis_sync.Redis.from_url(redis.url).info("memory")["used_memory"] / 1e6
    return (
        f"| memory with {users:,} distinct users in one day (exported DAU {dau:,.0f}) | sidecar peak RSS "
        f"{rss:.0f} MB (Redis holds the sets: {used:.0f} MB in use) | ≤ 300 MB | {'met' if rss <= 300 else 'MISSED'} |"
    )


async def _produce_users(bootstrap: str, topic: str, users: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    now = int(time.time() * 1000)
    try:
        for i in range(users):
            await producer.send(
                topic,
                orjson.dumps(
                    {
                        "org_id": f"org_{i % 200}",
                        "user_id": f"user_{i}",
                        "provider": "openai",
                        "model": "m",
                        "tokens_in": 1,
                        "tokens_out": 1,
                        "ts": now,
                    }
                ),
            )
        await producer.flush()
    finally:
        await producer.stop()


def all_targets(
    args: argparse.Namespace,
    workdir: Path,
    broker: LocalKafka | LocalTansu,
    redis: LocalRedis,
    t: Topics,
    truth: Truth | None,
    app_id: str,
) -> str:
    small = args.smoke
    rows = [
        freshness(workdir, broker.bootstrap, redis, rate=2_000 if small else 10_000, seconds=3 if small else 20),
        scrape_time(workdir, broker.bootstrap, redis, orgs=1_000 if small else 10_000, scrapes=20 if small else 200),
        restart_to_ready(workdir, t, redis, truth, app_id),
        memory_users(workdir, broker.bootstrap, redis, users=20_000 if small else 1_000_000),
    ]
    return "\n".join(["| target | measured | goal | verdict |", "|---|---|---|---|", *rows])
