"""The ceiling: a bare aiokafka consumer that reads both topics and decodes every record, nothing else.

Prints one JSON line: records read, seconds from the consumer's start to the last record, CPU seconds,
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer


async def run(bootstrap: str, topics: list[str], expect: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    first = time.monotonic()
    try:
        while seen < expect:
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            for records in batch.values():
                for rec in records:
                    orjson.loads(rec.value)
                seen += len(records)
    finally:
        await consumer.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": seen,
        "seconds": time.monotonic() - first,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.bootstrap, args.topics.split(","), args.expect))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
