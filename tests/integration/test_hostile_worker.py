"""Hostile input through the real worker: ≥ 10,000 hypothesis-generated records, 1 MB payloads included.

The worker never crashes, every record is counted valid or invalid by reason, the valid totals are
exact, the exposition passes `promtool check metrics`, and every invalid record is in the dead-letter
topic with its reason and source position.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import REASONS
from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import Truth
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.hostile import Item, item, one_megabyte

pytestmark = pytest.mark.integration

RECORDS = 10_000
PARTITIONS = 4
Position = tuple[str, int, int]  # topic, partition, offset


def generate(count: int) -> list[Item]:
    items: list[Item] = []

    @settings(max_examples=500, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(item(), min_size=1, max_size=8))
    def collect(drawn: list[Item]) -> None:
        items.extend(drawn)

    while len(items) < count:
        collect()
    valid = [i.event for i in items if i.event is not None and not i.enriched]
    # A handful of 1 MB payloads: each about 15 times the payload limit.
    items += [Item(False, one_megabyte(ev), None) for ev in valid[:5]]
    return items


async def _produce(bootstrap: str, names: Names, items: list[Item]) -> list[Position | None]:
    """Sends every item; returns the position of each (None for valid ones is not used)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        futures = []
        for n, it in enumerate(items):
            topic = names.enriched if it.enriched else names.raw
            key = None if it.payload is not None else b"tombstone"
            futures.append(await producer.send(topic, it.payload, key=key, partition=n % PARTITIONS))
        metas = await asyncio.gather(*futures)
        return [(m.topic, m.partition, m.offset) for m in metas]
    finally:
        await producer.stop()


async def _dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=2**21)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[bytes | None, dict[str, bytes]]] = []
        deadline = asyncio.get_running_loop().time() + 60
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.value, dict(r.headers)) for r in records]
        await asyncio.sleep(1)  # anything beyond the expected count would show up here
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found += [(r.value, dict(r.headers)) for r in records]
        return found
    finally:
        await consumer.stop()


def test_hostile_records_through_the_worker(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    dead_topic = f"dead.{names.app_id}"
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=PARTITIONS)
    make_topics(broker.bootstrap, [dead_topic], partitions=1)
    items = generate(RECORDS)
    assert len(items) >= RECORDS
    truth = Truth()
    for it in items:
        if it.event is not None:
            (truth.add_enriched if it.enriched else truth.add_raw)(it.event)
    invalid_items = [it for it in items if it.event is None]
    env = sidecar_env(
        broker, redis_server, names, STREAMS_DEAD_LETTER_TOPIC=dead_topic, STREAMS_MAX_ORG_SERIES="100000"
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        positions = asyncio.run(_produce(broker.bootstrap, names, items))
        final = wait_until(lambda: _everything_counted(proc, names, len(items)), 180, what="every record counted")
        assert proc.running()
        assert truth.mismatches(final, names.raw, names.enriched) == []
        invalid = {
            dict(k)["topic"] + "/" + dict(k)["reason"]: v
            for k, v in series(final, "ecomind_streams_events_invalid_total").items()
        }
        assert {key.split("/", 1)[1] for key in invalid} <= set(REASONS)
        for topic, enriched in ((names.raw, False), (names.enriched, True)):
            want = sum(1 for it in invalid_items if it.enriched == enriched)
            got = sum(v for key, v in invalid.items() if key.startswith(topic + "/"))
            assert got == want, f"{topic}: {got} counted invalid, {want} sent"
        promtool_accepts(proc.get("/metrics")[1])

        letters = asyncio.run(_dead_letters(broker.bootstrap, dead_topic, len(invalid_items)))
        assert len(letters) == len(invalid_items)
        by_position = {pos: it for pos, it in zip(positions, items, strict=True)}
        seen: set[Position] = set()
        reasons: Counter[str] = Counter()
        for letter, headers in letters:
            pos = (
                headers["ecomind.source.topic"].decode(),
                int(headers["ecomind.source.partition"]),
                int(headers["ecomind.source.offset"]),
            )
            sent = by_position[pos]
            assert sent.event is None, f"a valid record was dead-lettered: {pos}"
            original = sent.payload or b""
            assert int(headers["ecomind.source.value_bytes"]) == len(original)
            assert (letter or b"") == original[: len(letter or b"")] and (
                len(original) > 900_000 or letter == sent.payload
            )
            seen.add(pos)
            reasons[pos[0] + "/" + headers["ecomind.reason"].decode()] += 1
        assert len(seen) == len(invalid_items)
        assert reasons == Counter({k: int(v) for k, v in invalid.items()})
        assert value(proc.scrape(), "ecomind_streams_dead_letters_total") == float(len(invalid_items))
    finally:
        proc.stop()


def _everything_counted(proc: SidecarProc, names: Names, total: int) -> Samples | None:
    m = proc.scrape()
    counted = sum(value(m, "ecomind_streams_events_processed_total", topic=t) or 0 for t in (names.raw, names.enriched))
    counted += sum(series(m, "ecomind_streams_events_invalid_total").values())
    return m if counted >= total else None
