"""Faults of the input logs on Apache Kafka: aborted transactions, records removed before they were
read, a topic deleted and recreated, and a dead-letter topic that does not exist."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from streams.local.brokers import LocalKafka
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tests.integration.conftest import Names, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # transactions, DeleteRecords: Apache Kafka


def _events(org: str, n: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    return [raw_event(org, f"u{i}", now_ms - i) for i in range(n)]


async def _transactions(bootstrap: str, topic: str, plan: list[tuple[bool, list[bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"txn-{topic}", acks="all")
    await producer.start()
    try:
        for commit, values in plan:
            await producer.begin_transaction()
            for v in values:
                await producer.send(topic, v, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def _last_record_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        last = -1
        while batch := await consumer.getmany(tp, timeout_ms=2000):
            last = batch[tp][-1].offset
        return last
    finally:
        await consumer.stop()


def _raw_folded(proc: SidecarProc, names: Names, n: int, what: str) -> Samples:
    """The scrape once exactly `n` valid raw events are folded (fails after a minute)."""

    def check() -> Samples | None:
        m = proc.scrape()
        return m if value(m, "ecomind_streams_events_processed_total", topic=names.raw) == n else None

    return wait_until(check, 90, what=what)


def test_aborted_transactions_are_not_counted_and_markers_leave_no_lag(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=1)
    plan = [(True, _events("kept_a", 40)), (False, _events("aborted", 25)), (True, _events("kept_b", 30))]
    plan.append((False, _events("aborted", 5)))  # the log ends in an aborted transaction and its marker
    asyncio.run(_transactions(broker.bootstrap, names.raw, plan))
    # The worker commits right after its last record: one below the end, where the commit marker sits.
    last = asyncio.run(_last_record_offset(broker.bootstrap, names.raw))
    commit_group(broker.bootstrap, names.watch_group, names.raw, {0: last + 1})
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis_server, names)).start()
    try:
        proc.wait_ready()
        _raw_folded(proc, names, 70, "the committed transactions folded")
        time.sleep(2)  # anything of the aborted transaction would have been folded by now
        m = proc.scrape()
        assert value(m, "ecomind_streams_events_processed_total", topic=names.raw) == 70.0
        assert value(m, "ecomind_events_ingested_total", org_id="aborted", provider="openai") is None
        assert value(m, "ecomind_daily_active_orgs") == 2.0
        lag = wait_until(
            lambda: value(proc.scrape(), "ecomind_worker_kafka_lag", topic=names.raw, partition="0") is not None,
            30,
            what="the watched group's lag measured",
        )
        assert lag
        assert value(proc.scrape(), "ecomind_worker_kafka_lag", topic=names.raw, partition="0") == 0.0
        # The sidecar's own group: its stored and committed offsets pass the markers and the aborted tail.
        end = asyncio.run(_log_end(broker.bootstrap, names.raw))
        assert end == last + 1 + 1 + 5 + 1  # kept_b's marker, the aborted tail, its marker
        wait_until(
            lambda: asyncio.run(_own_committed(broker.bootstrap, names.app_id, names.raw)) == end,
            30,
            what="the sidecar's committed offset at the log's end",
        )
    finally:
        proc.stop()


async def _log_end(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)  # read_uncommitted: the high watermark
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def _own_committed(bootstrap: str, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(topic, 0)
        meta = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
        return None if meta is None or meta.offset < 0 else int(meta.offset)
    finally:
        await admin.close()


async def _delete_before(bootstrap: str, topic: str, offset: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=offset)})
    finally:
        await admin.close()


async def _recreate(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + 60
        while True:  # deletion completes in the background
            try:
                await admin.create_topics([NewTopic(topic, 1, 1)])
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


def _run_until(proc: SidecarProc, names: Names, processed: int) -> dict[str, float | None]:
    proc.start().wait_ready()
    return _counts(_raw_folded(proc, names, processed, f"{processed} raw events folded"), names)


def _counts(m: Samples, names: Names) -> dict[str, float | None]:
    return {
        "truncated": value(m, "ecomind_streams_offset_resets_total", topic=names.raw, reason="truncated"),
        "beyond": value(m, "ecomind_streams_offset_resets_total", topic=names.raw, reason="beyond_log_end"),
        "skipped": value(m, "ecomind_streams_offsets_skipped_total", topic=names.raw),
        "recreated": value(m, "ecomind_streams_topics_recreated_total", topic=names.raw),
        "third": value(m, "ecomind_events_ingested_total", org_id="third", provider="openai"),
    }


def test_log_truncated_then_topic_recreated_and_written_past_it(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    redis = LocalRedis(workdir / f"redis-{names.app_id}").start()
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=1)
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis, names))
    try:
        produce(broker.bootstrap, names.raw, [Out(v, 0) for v in _events("first", 100)])
        assert _run_until(proc, names, 100)["truncated"] == 0.0
        proc.stop()
        produce(broker.bootstrap, names.raw, [Out(v, 0) for v in _events("second", 100)])
        # Retention removes offsets 100-149 before the sidecar read them: 50 records are gone for good.
        asyncio.run(_delete_before(broker.bootstrap, names.raw, 150))
        found = _run_until(proc, names, 150)
        assert found == {"truncated": 1.0, "beyond": 0.0, "skipped": 50.0, "recreated": 0.0, "third": None}
        assert "out of the log" in proc.log_tail(20_000)
        proc.stop()
        # The topic is deleted and created again, and written past the stored offset (200) before the
        # sidecar is back: by offsets alone it would resume at 200 and skip the first 200 of the 250. Its
        # new topic ID says it is another topic: every one of its records is counted, once.
        asyncio.run(_recreate(broker.bootstrap, names.raw))
        produce(broker.bootstrap, names.raw, [Out(v, 0) for v in _events("third", 250)])
        _run_until(proc, names, 400)

        # The business series come from the exporter, which may take over a moment after the fold.
        def exported() -> dict[str, float | None] | None:
            found = _counts(proc.scrape(), names)
            return found if found["third"] == 250.0 else None

        found = wait_until(exported, 60, what="the new topic exported")
        assert found == {"truncated": 0.0, "beyond": 0.0, "skipped": 0.0, "recreated": 1.0, "third": 250.0}
        assert "deleted and created again" in proc.log_tail(20_000)
        time.sleep(2)  # a second pass over the new topic would show by now
        assert value(proc.scrape(), "ecomind_streams_events_processed_total", topic=names.raw) == 400.0
    finally:
        proc.stop()
        redis.stop()


def test_topic_recreated_while_the_sidecar_runs(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """Deleted and created again under a running sidecar, then written past the offset it had reached:
    the new topic's records are each counted once, whatever the consumer saw meanwhile."""
    redis = LocalRedis(workdir / f"redis-{names.app_id}").start()
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=1)
    proc = SidecarProc(workdir / names.app_id, sidecar_env(broker, redis, names))
    try:
        produce(broker.bootstrap, names.raw, [Out(v, 0) for v in _events("first", 120)])
        proc.start().wait_ready()
        _raw_folded(proc, names, 120, "the first topic folded")
        asyncio.run(_recreate(broker.bootstrap, names.raw))
        produce(broker.bootstrap, names.raw, [Out(v, 0) for v in _events("third", 300)])
        # The consumer sees the new topic at its next metadata refresh (30 s, streams/clients.py).
        m = _raw_folded(proc, names, 420, "the re-created topic folded")
        assert value(m, "ecomind_events_ingested_total", org_id="third", provider="openai") == 300.0
        assert value(m, "ecomind_streams_topics_recreated_total", topic=names.raw) == 1.0
        time.sleep(3)
        assert value(proc.scrape(), "ecomind_streams_events_processed_total", topic=names.raw) == 420.0
    finally:
        proc.stop()
        redis.stop()


def test_missing_dead_letter_topic_never_stalls_the_metrics(workdir: Path, names: Names) -> None:
    kafka = LocalKafka(workdir / f"kafka-noauto-{names.app_id}", auto_create=False).start()
    redis = LocalRedis(workdir / f"redis-{names.app_id}").start()
    env = sidecar_env(kafka, redis, names, STREAMS_DEAD_LETTER_TOPIC=f"dead.{names.app_id}")
    proc = SidecarProc(workdir / names.app_id, env)
    try:
        make_topics(kafka.bootstrap, [names.raw, names.enriched], partitions=1)
        valid, invalid = _events("org", 200), [b"{not json" for _ in range(20)]
        mixed = [v for pair in zip(valid[:20], invalid, strict=True) for v in pair] + valid[20:]
        produce(kafka.bootstrap, names.raw, [Out(v, 0) for v in mixed])
        started = time.monotonic()
        proc.start().wait_ready()
        m = _raw_folded(proc, names, 200, "every valid event folded although dead letters cannot be written")
        assert time.monotonic() - started < 90
        assert value(m, "ecomind_streams_events_invalid_total", topic=names.raw, reason="not_json") == 20.0
        assert value(m, "ecomind_streams_dead_letters_dropped_total", reason="unavailable") == 20.0
        assert (value(m, "ecomind_streams_dead_letters_total") or 0.0) == 0.0
        assert "dead letters dropped (unavailable)" in proc.log_tail(50_000)
    finally:
        proc.stop()
        redis.stop()
        kafka.stop()
