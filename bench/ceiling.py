"""The ceiling: a bare aiokafka consumer that reads both topics and decodes every record, nothing else.

`--decoder orjson` (the ceiling the headline is judged against) decodes each record into a dict;
`--decoder schema` into EcoMind's own msgspec schemas (core/schema.py), the faster decoder the sidecar
uses, so the table also shows how far EcoMind is from a bare consumer that decodes as it does.

Prints one JSON line: records read, seconds from the consumer's start to the last record, CPU seconds,
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer

from core.schema import ENRICHED_DECODER, RAW_DECODER


def decoders(kind: str, topics: list[str]) -> dict[str, Callable[[bytes], object]]:
    """Per topic; the first topic holds raw events, the second enriched ones."""
    if kind == "orjson":
        return dict.fromkeys(topics, orjson.loads)
    return {topics[0]: RAW_DECODER.decode, topics[1]: ENRICHED_DECODER.decode}


async def run(
    bootstrap: str, topics: list[str], expect: int, fetch_kwargs: dict[str, int], decoder: str
) -> dict[str, float]:
    decode = decoders(decoder, topics)
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
            for tp, records in batch.items():
                loads = decode[tp.topic]
                for rec in records:
                    loads(rec.value)
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
    parser.add_argument("--decoder", choices=("orjson", "schema"), default="orjson")
    args = parser.parse_args()
    fetch_kwargs = {}
    if args.partition_fetch_bytes:
        fetch_kwargs["max_partition_fetch_bytes"] = args.partition_fetch_bytes
    if args.fetch_max_bytes:
        fetch_kwargs["fetch_max_bytes"] = args.fetch_max_bytes
    result = asyncio.run(run(args.bootstrap, args.topics.split(","), args.expect, fetch_kwargs, args.decoder))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
