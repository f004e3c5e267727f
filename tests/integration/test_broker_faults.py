"""Apache Kafka faults mid-stream: a broker restart, and the partition leader killed in a 3-broker cluster.

Each test owns its brokers (they are the fault), so the suite's shared broker is untouched. The
sidecar must keep serving its last values, say the broker is unreachable (gauge and /ready), resume
by itself and end with exact totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.local.brokers import KafkaCluster, LocalKafka
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, Truth, build
from tests.integration.conftest import Names, all_folded, processed, sidecar_env

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]


def _run_with_fault(
    broker: LocalKafka | KafkaCluster,
    redis: LocalRedis,
    names: Names,
    home: Path,
    truth_plan: tuple[list[bytes], list[bytes], Truth],
    fault: Callable[[], None],
    recover: Callable[[], object],
    outage_reported: bool = True,
) -> None:
    """Stream the workload, inject `fault` at a third, check the outage is reported while the last
    values are served, `recover`, and check exact totals."""
    raws, enriched, truth = truth_plan
    total = truth.raw_count + truth.enriched_count
    bootstrap = broker.bootstrap
    env = sidecar_env(broker, redis, names)
    proc = SidecarProc(home, env).start()
    producer = BackgroundProducer(bootstrap, [(names.raw, raws), (names.enriched, enriched)], 2_000, idempotent=True)
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: processed(proc.scrape(), names) >= total // 3, 90, what="a third folded")
        before = proc.scrape()
        fault()
        if outage_reported:
            down = wait_until(lambda: _reported_down(proc), 60, interval_s=0.1, what="broker reported unreachable")
            # Still serving the business values it had, and never fewer than before the fault.
            assert value(down, "ecomind_streams_broker_up") == 0.0
            users = value(down, "ecomind_daily_active_users") or 0
            assert users >= (value(before, "ecomind_daily_active_users") or 0)
            assert processed(down, names) >= processed(before, names)
            assert proc.get("/ready")[0] == 503
        recover()
        wait_until(lambda: proc.get("/ready")[0] == 200, 120, what="ready again after the fault")
        producer.join(240)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 180, what="all events folded")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert value(final, "ecomind_streams_broker_up") == 1.0
        assert value(final, "ecomind_streams_batch_conflicts_total") == 0.0
    finally:
        proc.stop()


def _reported_down(proc: SidecarProc) -> Samples | None:
    m = proc.scrape()
    return m if value(m, "ecomind_streams_broker_up") == 0.0 and value(m, "ecomind_streams_ready") == 0.0 else None


def test_broker_restart_mid_stream(redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    kafka = LocalKafka(workdir / f"restart-{names.app_id}").start()
    try:
        make_topics(kafka.bootstrap, [names.raw, names.enriched], partitions=4)
        plan = build(seed=21, raw_events=60_000, enriched_every=3)
        _run_with_fault(
            kafka,
            redis_server,
            names,
            workdir / names.app_id,
            plan,
            fault=kafka.stop,
            recover=kafka.start,
        )
    finally:
        kafka.stop()


async def _leader_of(bootstrap: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return next(int(p["leader"]) for p in described["partitions"] if p["partition"] == partition)
    finally:
        await admin.close()


def test_partition_leader_killed_in_three_broker_cluster(redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    cluster = KafkaCluster(workdir / f"cluster-{names.app_id}").start()
    try:
        make_topics(cluster.bootstrap, [names.raw, names.enriched], partitions=4, replicas=3)
        plan = build(seed=22, raw_events=60_000, enriched_every=3)
        victim: list[int] = []

        def kill_leader() -> None:
            victim.append(asyncio.run(_leader_of(cluster.bootstrap, names.raw, 0)))
            cluster.kill_node(victim[0])

        _run_with_fault(
            cluster,
            redis_server,
            names,
            workdir / names.app_id,
            plan,
            fault=kill_leader,
            recover=lambda: None,  # nothing restarts it: the two others carry on
            # The dead broker is reported only until the controller fences it out of the metadata; on a busy
            # machine the probe's request to it can outlast that window, so the report is asserted where the
            # outage lasts (test_broker_restart_mid_stream), and here what matters: exact through the loss.
            outage_reported=False,
        )
        assert victim and not cluster.servers[victim[0]].running()
    finally:
        cluster.stop()
