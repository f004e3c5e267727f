"""SIGTERM mid-stream: the write in flight lands, offsets are committed, the group and the exporter
lease are released, and the restarted replica folds exactly the records it had not folded before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tables.keys import Keys
from tables.lease import lease_key, legacy_lease_key
from tests.integration.conftest import Names, all_folded, processed, sidecar_env

pytestmark = pytest.mark.integration


async def _committed(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # An explicit partition list: some brokers drop the connection without one.
        tps = [TopicPartition(t, p) for t in topics for p in range(4)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {
            f"{tp.topic}:{tp.partition}": meta.offset
            for tp, meta in offsets.items()
            if meta is not None and meta.offset >= 0
        }
    finally:
        await admin.close()


def test_sigterm_commits_and_the_restart_refolds_nothing(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=41, raw_events=45_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    proc = SidecarProc(workdir / names.app_id, env).start()
    producer = BackgroundProducer(broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], 3_000)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = Keys(names.app_id)
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: processed(proc.scrape(), names) >= total // 3, 90, what="a third folded")
        assert proc.server is not None and proc.server.proc is not None
        asked = time.monotonic()
        proc.server.proc.send_signal(15)
        assert proc.server.proc.wait(timeout=30) == 0, proc.log_tail()
        shutdown_s = time.monotonic() - asked
        # The hash also holds each partition's topic ID (`topic:partition:id`): offsets only.
        stored = {f: int(v) for f, v in store.hgetall(keys.offsets).items() if not str(f).endswith(":id")}
        done_at_stop = sum(stored.values())
        assert 0 < done_at_stop < total, "the stop must land mid-stream"
        # The Kafka commit mirrors the stored offsets exactly, so lag tools see what the tables hold.
        assert asyncio.run(_committed(broker.bootstrap, names.app_id, [names.raw, names.enriched])) == stored
        # State and offsets agree: every record below the stored offsets is counted (all are valid).
        counted = {t: int(v) for t, v in store.hgetall(keys.key("processed")).items()}
        assert sum(counted.values()) == done_at_stop
        lease = store.hgetall(lease_key(names.app_id))
        assert lease["state"] == "released", f"the exporter lease is released, not left to expire: {lease}"
        # Layout 3's key stays in the releaser's name to the end of its term (or of its visible series):
        # a build before the shared lease takes it only after that.
        assert store.get(legacy_lease_key(names.app_id)) == lease["holder"]
        assert store.pttl(legacy_lease_key(names.app_id)) > 0
        assert shutdown_s < 15, f"shutdown took {shutdown_s:.1f}s"

        proc.start()
        proc.wait_ready()
        producer.join(120)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 120, what="all events folded after the restart")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        # The restarted process folded each remaining record once and nothing before the stored offsets.
        assert value(final, "ecomind_streams_records_folded_total") == float(total - done_at_stop)
        assert value(final, "ecomind_streams_batch_conflicts_total") == 0.0
    finally:
        store.close()
        proc.stop()
