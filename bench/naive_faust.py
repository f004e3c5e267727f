"""The naive baseline: the Faust app every team writes first.

One agent per topic, one table update per event: a per-org count Table and a daily tumbling Table
(raw), per-org daily kWh (enriched). Progress is written to a file for the benchmark to poll.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import faust

app = faust.App(
    os.environ.get("NAIVE_APP_ID", "naive-baseline"),
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', 'localhost:9092')}",
    store="memory://",
    web_enabled=False,
    topic_partitions=8,
    broker_max_poll_records=10_000,
    stream_wait_empty=False,
)
raw_topic = app.topic(os.environ.get("NAIVE_RAW_TOPIC", "events.raw"), value_serializer="json")
enriched_topic = app.topic(os.environ.get("NAIVE_ENRICHED_TOPIC", "events.enriched"), value_serializer="json")
per_org = app.Table("per_org", default=int)
daily = app.Table("daily_per_org", default=int).tumbling(timedelta(days=1), expires=timedelta(days=2))
daily_kwh = app.Table("daily_kwh", default=float).tumbling(timedelta(days=1), expires=timedelta(days=2))
PROGRESS = Path(os.environ.get("NAIVE_PROGRESS_FILE", "/tmp/naive-progress"))
seen = {"n": 0, "first": 0.0, "last": 0.0}


def _tick() -> None:
    now = time.monotonic()
    if not seen["first"]:
        seen["first"] = now
    seen["n"] += 1
    seen["last"] = now


@app.agent(raw_topic)
async def count_raw(stream: faust.StreamT) -> None:  # type: ignore[type-arg]
    async for event in stream:
        per_org[event["org_id"]] += 1
        daily[event["org_id"]] += 1
        _tick()


@app.agent(enriched_topic)
async def sum_enriched(stream: faust.StreamT) -> None:  # type: ignore[type-arg]
    async for event in stream:
        daily_kwh[event["org_id"]] += event["kwh"]
        _tick()


@app.timer(0.5)  # type: ignore[untyped-decorator]
async def report() -> None:
    PROGRESS.write_text(f"{seen['n']} {seen['last'] - seen['first']:.3f}")
