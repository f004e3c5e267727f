"""What a fetched record costs before the fold sees it: aiokafka's own path against the tap's bulk path.

python -m bench.records    # the benchmark's raw events in 500-record batches, best of 7, one process

Both read the same record batches through aiokafka's FetchResult.getall, as getmany does: aiokafka's
PartitionRecords (a generator building a ConsumerRecord per record) and agents/bulk_fetch.py's
BulkRecords (the batches parsed in C). CRCs are checked on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka.structs import TopicPartition

from agents.bulk_fetch import BulkRecords
from streams.local.record_batches import fetch_result, partition_records, record_batch
from streams.local.workload import build
from streams.runtime import tune_gc

TP = TopicPartition("bench.raw", 0)
RECORDS_PER_BATCH = 500


def log_of(values: list[bytes], timestamp_ms: int, records_per_batch: int = RECORDS_PER_BATCH) -> bytes:
    return b"".join(
        record_batch(base, values[base : base + records_per_batch], timestamp_ms=timestamp_ms, keyed=False)
        for base in range(0, len(values), records_per_batch)
    )


def read_all(log: bytes, bulk: bool) -> list[Any]:
    records = partition_records(TP, log)
    result, _ = fetch_result(TP, BulkRecords(records) if bulk else records)
    got: list[Any] = result.getall(None)
    return got


def best_us_per_record(read: Callable[[], list[Any]], repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        n = len(read())
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def main() -> None:
    raws, _, _ = build(seed=42, raw_events=100_000, enriched_every=1, orgs=200, users=50_000, home_org=True)
    log = log_of(raws, int(time.time() * 1000))
    tune_gc()
    theirs = best_us_per_record(lambda: read_all(log, bulk=False))
    ours = best_us_per_record(lambda: read_all(log, bulk=True))
    print("| path | µs per record | vs aiokafka's |")
    print("|---|---:|---:|")
    print(f"| aiokafka's PartitionRecords (a ConsumerRecord per record) | {theirs:.2f} | 100% |")
    print(f"| the tap's BulkRecords (batches parsed in C) | {ours:.2f} | {ours / theirs:.0%} |")


if __name__ == "__main__":
    main()
