"""A small world for sharded-state tests: random raw and enriched events on a few partitions, folded by the
real fold into batches, written by the real stores (the real batch script in Lua over the simulated
keyspace), and scraped by the real read path. The same events written with one shard are the oracle."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from tables.delta import Delta
from tables.keys import Keys
from tables.shard_reads import sharded_tables
from tables.shards import ShardKeys, partition_shard
from tables.snapshot import Snapshot, decode
from tables.table_reads import consistent_tables
from tables.writes import OffsetMove
from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts
from tests.sim.scrape import ReadClient

APP = "app"
TOPICS = ("raw", "enriched")
PARTITIONS = 4
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TODAY = NOW.date().isoformat()
CAPS = {"org_id": 3, "provider": 2, "model": 2}  # small, so that "__other__" gets values


@dataclass(frozen=True)
class Rec:
    value: bytes
    timestamp: int
    offset: int


class Redis(Scripts):
    """The real scripts over a simulated keyspace, with the reads the stores make themselves."""

    def __init__(self) -> None:
        super().__init__(Keyspace(lambda: NOW.timestamp()))

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    def snapshot(self, tag: str) -> dict[str, Any]:
        """Every key of one hash tag, copied: what a shard restored from an older snapshot holds."""
        return {k: _copy(v) for k, v in self.keyspace.data.items() if k.startswith(tag)}

    def restore(self, tag: str, saved: dict[str, Any]) -> None:
        for k in [k for k in self.keyspace.data if k.startswith(tag)]:
            del self.keyspace.data[k]
            self.keyspace.expires_ms.pop(k, None)
        self.keyspace.data.update({k: _copy(v) for k, v in saved.items()})


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, dict | set) else value


@dataclass
class Batch:
    records: dict[tuple[str, int], list[Rec]]
    moves: list[OffsetMove] = field(default_factory=list)


def events(seed: int, count: int) -> list[tuple[str, int, Rec]]:
    """Events in arrival order: (topic, partition, record), offsets counted per partition."""
    rng = random.Random(seed)
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for _ in range(count):
        topic, partition = rng.choice(TOPICS), rng.randrange(PARTITIONS)
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        day = NOW - timedelta(days=rng.choice([0, 0, 0, 1, 5]), minutes=rng.randrange(600))
        event: dict[str, Any] = {
            "org_id": f"o{rng.randrange(6)}",
            "user_id": f"u{rng.randrange(30)}",
            "provider": rng.choice(["openai", "anthropic", "mistral"]),
            "model": rng.choice(["m1", "m2", "m3"]),
            "tokens_in": rng.randrange(1000),
            "tokens_out": rng.randrange(1000),
            "ts": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if topic == "enriched":
            event |= {"kwh": rng.random() / 7, "co2_kg": rng.random() / 3}
        out.append((topic, partition, Rec(orjson.dumps(event), NOW_MS - rng.randrange(5000), offset)))
    return out


def batches(seed: int, count: int) -> list[Batch]:
    """The events cut into batches of random sizes, each with its partitions' offset moves."""
    rng = random.Random(seed ^ 0xBA7C)
    stream, out, start = events(seed, count), [], 0
    expected: dict[tuple[str, int], int | None] = {}
    while start < len(stream):
        size = rng.randrange(1, 40)
        batch = Batch({})
        for topic, partition, rec in stream[start : start + size]:
            batch.records.setdefault((topic, partition), []).append(rec)
        for (topic, partition), records in batch.records.items():
            before = expected.get((topic, partition))
            batch.moves.append(OffsetMove(topic, partition, before, records[-1].offset + 1))
            expected[(topic, partition)] = records[-1].offset + 1
        out.append(batch)
        start += size
    return out


def fold(records: dict[tuple[str, int], list[Rec]]) -> Delta:
    ctx = FoldContext(DayCalendar(ZoneInfo("UTC")), NOW_MS, 2, 86_400_000, 65_536)
    delta = Delta()
    for (topic, partition), recs in records.items():
        (fold_raw if topic == "raw" else fold_enriched)(delta, topic, recs, ctx, partition)
    return delta


def fold_by_shard(batch: Batch, shards: int) -> dict[int, Delta]:
    """The tap's fold for sharded state: the partitions of shard k into one Delta."""
    by_shard: dict[int, dict[tuple[str, int], list[Rec]]] = {}
    for tp, recs in batch.records.items():
        by_shard.setdefault(partition_shard(tp[1], shards), {})[tp] = recs
    return {shard: fold(records) for shard, records in by_shard.items()}


async def scrape_one(redis: Redis) -> Snapshot:
    raw = await consistent_tables(ReadClient(redis.keyspace), Keys(APP), TODAY)  # type: ignore[arg-type]
    return decode(raw, "raw")


async def scrape_sharded(redis: Redis, shards: int) -> Snapshot:
    keys = [ShardKeys(APP, shard) for shard in range(shards)]
    raw, unreadable = await sharded_tables(ReadClient(redis.keyspace), keys, TODAY)  # type: ignore[arg-type]
    snap = decode(raw, "raw")
    snap.unreadable = unreadable
    return snap


def today_index() -> int:
    return date.fromisoformat(TODAY).toordinal()
