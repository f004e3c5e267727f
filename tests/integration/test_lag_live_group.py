"""A live classic consumer group, on both brokers of the suite (STREAMS_TEST_BROKER=kafka or tansu), with
the sidecar's default stale setting (drop) and per-client lag on: its lag must be measured whatever the
broker says about member assignments. Tansu describes a Stable member with an empty assignment and no
client id or host, and does not answer DescribeConfigs in a form clients decode: neither may cost the
group its series, add a nameless client row, or slow or break the probe's cycles."""

from __future__ import annotations

import functools
import re
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.clients import build_clients
from streams.lag.probe import LagProbe
from streams.lag.scope import LagScope
from tests.integration.conftest import BROKER_KIND
from tests.integration.kafka_io import Out, produce_async
from tests.integration.test_lag_kip848 import until
from tests.integration.test_lag_probe import table

pytestmark = pytest.mark.integration


async def _stable(probe: LagProbe, group: str) -> bool:
    snap = await probe.measure()
    return group in snap.groups and snap.groups[group].state == "Stable"


async def test_a_live_group_keeps_its_lag_and_the_cycles_stay_short(broker) -> None:  # type: ignore[no-untyped-def]
    uid = uuid.uuid4().hex[:8]
    topic, group = f"live-{uid}-orders", f"live-{uid}-sink"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    await produce_async(broker.bootstrap, topic, [Out(b"%d" % i, 0) for i in range(10)])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        client_id="live-sink",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    bootstrap_admin, probe_consumer = build_clients(broker.bootstrap, {})
    probe = LagProbe(
        bootstrap_admin,
        probe_consumer,
        f"live-{uid}-watched",
        topic,
        include=re.compile(f"live-{uid}-.*"),
        fetch_timeout_ms=5000,
        scope=LagScope(members=True),  # STREAMS_LAG_STALE's default: drop
    )
    # The configs' values are under test here, not the cycle's short wait for them (0.5 s, then the next
    # cycle uses the answer): on a loaded machine the first answer can take longer than that.
    probe.outlook.reader.wait_s = 10.0
    await consumer.start()
    await probe.start()
    try:
        await until(lambda: consumer.assignment() == {TopicPartition(topic, 0)}, 30, "the partition assigned")
        await consumer.commit({TopicPartition(topic, 0): 4})
        await until(functools.partial(_stable, probe, group), 30, "the group Stable")
        cycles = []
        for _ in range(3):
            started = time.monotonic()
            snap = await probe.measure()
            cycles.append(time.monotonic() - started)
            g = snap.groups[group]
            assert snap.errors == []
            assert (g.state, g.members) == ("Stable", 1)
            assert table(g) == {(topic, 0): (6, True)}  # measured, not judged stale
            assert (g.stale_topics, g.stale_partitions) == (frozenset(), 0)
            rows = [(r.client_id, r.host, r.partitions, r.lag_messages) for r in g.member_lag]
            if BROKER_KIND == "tansu":
                assert rows == []  # no names and no assignment: no client row at all
            else:
                assert rows == [("live-sink", "/127.0.0.1", 1, 6)]
        print(f"{BROKER_KIND}: cycles {', '.join(f'{c:.2f}s' for c in cycles)}")
        # DescribeConfigs fails at once on Tansu and is not asked again within the refresh interval.
        assert max(cycles[1:]) < 3.0  # the first waited for the topic configs
        assert snap.outlook is not None
        margins = {k: v for k, v in snap.outlook.margins.items() if k[0] == group}
        if BROKER_KIND == "tansu":
            assert margins == {}
        else:  # retention.ms defaults to 7 days; the oldest unread record is seconds old
            (margin,) = margins.values()
            assert 7 * 86_400 - 120 < margin <= 7 * 86_400
    finally:
        await consumer.stop()
        await probe.stop()
