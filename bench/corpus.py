"""The instruction gate's fixed corpus, and the work it counts (bench/instructions.py).

Each workload row (bench/workload_rows.py) becomes the same bytes on every run and every day: its events
from the same seed with a fixed "now", spread over its partitions by a seeded draw (as the gateway's
producer spreads unkeyed events), laid out as Kafka record batches of RECORDS_PER_BATCH records (the
gateway's small batches). The counted work is what the tap does with a fetched batch: the record path
(agents/bulk_fetch.py BulkRecords, through aiokafka's FetchResult as getmany reads it) and the fold
(agents/fold.py, with a FoldContext and in the tap's chunks), and the batch's payload for Redis
(tables/store.py `build_payload` and its JSON encoding).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as redis_async

from agents.fold import FoldContext, fold_enriched, fold_raw
from agents.tap import FOLD_CHUNK_RECORDS
from bench.records import log_of, read_all
from bench.workload_rows import SEED, WorkloadRow, workload
from core.calendar import DayCalendar
from streams.settings import Settings
from tables.delta import Delta
from tables.store import RedisStore
from tables.writes import OffsetMove

FIXED_NOW_MS = 1_759_838_400_000  # 2025-10-07T12:00:00Z, a Tuesday far from any DST change
RECORD_TIMESTAMP_MS = FIXED_NOW_MS + 2_000  # the broker's append time, a little after the events
RAW_EVENTS_PER_ROW = 2_500  # and as many enriched: enough to dwarf the per-batch costs, quick under valgrind
RECORDS_PER_BATCH = 40
RAW_TOPIC, ENRICHED_TOPIC = "events.raw", "events.enriched"
DEFAULTS = Settings()  # the settings a user runs with

Parts = list[list[Any]]  # per partition, its records as the record path returns them


@dataclass
class RowCorpus:
    key: str
    raw_logs: list[bytes]  # per partition, its record batches
    enriched_logs: list[bytes]
    events: int  # raw and enriched


def corpus(row: WorkloadRow, raw_events: int = RAW_EVENTS_PER_ROW) -> RowCorpus:
    raws, enriched, _ = workload(row, raw_events, now_ms=FIXED_NOW_MS)
    spread = random.Random(SEED)
    return RowCorpus(
        row.key,
        _logs(raws, row.partitions, spread),
        _logs(enriched, row.partitions, spread),
        len(raws) + len(enriched),
    )


def _logs(values: list[bytes], partitions: int, spread: random.Random) -> list[bytes]:
    parts: list[list[bytes]] = [[] for _ in range(partitions)]
    for value in values:
        parts[spread.randrange(partitions)].append(value)
    return [log_of(part, RECORD_TIMESTAMP_MS, RECORDS_PER_BATCH) for part in parts]


def read_records(c: RowCorpus) -> tuple[Parts, Parts]:
    """The record path: every partition's batches parsed into records, CRCs checked."""
    return [read_all(log, bulk=True) for log in c.raw_logs], [read_all(log, bulk=True) for log in c.enriched_logs]


def fold(calendar: DayCalendar, raw_parts: Parts, enriched_parts: Parts) -> Delta:
    """The fold of one fetched batch holding every partition, as agents/tap.py `_fold` calls it."""
    s = DEFAULTS
    ctx = FoldContext(calendar, FIXED_NOW_MS, s.days_kept, s.max_future_seconds * 1000, s.max_payload_bytes)
    delta = Delta()
    for topic, fold_topic, parts in ((RAW_TOPIC, fold_raw, raw_parts), (ENRICHED_TOPIC, fold_enriched, enriched_parts)):
        for partition, records in enumerate(parts):
            for start in range(0, len(records), FOLD_CHUNK_RECORDS):
                fold_topic(delta, topic, records[start : start + FOLD_CHUNK_RECORDS], ctx, partition)
    return delta


def payload(delta: Delta, raw_parts: Parts, enriched_parts: Parts, store_class: type[RedisStore] = RedisStore) -> bytes:
    """The batch's write, as tables/store.py `apply` builds it before Redis sees it: the script's payload
    for the Delta (nothing seen before: every member is sent) and its JSON encoding."""
    # A client object only: constructing it connects to nothing, and build_payload never uses it.
    store = store_class(redis_async.Redis(), "gate", DEFAULTS.days_kept, seen_cache_entries=DEFAULTS.seen_cache_entries)
    moves = [
        OffsetMove(topic, partition, None, len(records))
        for topic, parts in ((RAW_TOPIC, raw_parts), (ENRICHED_TOPIC, enriched_parts))
        for partition, records in enumerate(parts)
    ]
    return orjson.dumps(store.build_payload(delta, moves, store.seen))


def default_calendar() -> DayCalendar:
    return DayCalendar(ZoneInfo(DEFAULTS.timezone))
