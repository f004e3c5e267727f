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


async def run(bootstrap: str, topics: list[str], expect: int, fetch_kwargs: dict[str, int]) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **fetch_kwargs,
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
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {
        "events": seen,
        "seconds": time.monotonic() - first,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": hwm_kb / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--partition-fetch-bytes", type=int, default=0, help="0: aiokafka's default")
    parser.add_argument("--fetch-max-bytes", type=int, default=0, help="0: aiokafka's default")
    args = parser.parse_args()
    fetch_kwargs = {}
    if args.partition_fetch_bytes:
        fetch_kwargs["max_partition_fetch_bytes"] = args.partition_fetch_bytes
    if args.fetch_max_bytes:
        fetch_kwargs["fetch_max_bytes"] = args.fetch_max_bytes
    result = asyncio.run(run(args.bootstrap, args.topics.split(","), args.expect, fetch_kwargs))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
