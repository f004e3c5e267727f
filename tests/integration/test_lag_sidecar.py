"""Every selected group's lag through the running sidecar's /metrics: its own group like any other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = pytest.mark.integration
TAPPED = "default"  # STREAMS_LAG_CLUSTER_NAME's default: every per-group series is labelled with it


def _setup(broker, names: Names) -> str:  # type: ignore[no-untyped-def]
    """raw: 5 records per partition, the first ones two minutes old; an outside group 3 behind on raw/0."""
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    now = int(time.time() * 1000)
    produce(broker.bootstrap, names.raw, [Out(b"{}", p, now - 120_000 + i) for p in (0, 1) for i in range(5)])
    # One record per enriched partition, so the sidecar's own group commits on every partition it reads
    # (Tansu's DescribeGroups gives no member assignments to learn the topics of a group from).
    produce(broker.bootstrap, names.enriched, [Out(b"{}", p) for p in (0, 1)])
    outside = f"ext-{names.app_id}-sink"
    commit_group(broker.bootstrap, outside, names.raw, {0: 2, 1: 5})
    commit_group(broker.bootstrap, f"ext-{names.app_id}-skipme", names.raw, {0: 0})
    return outside


def _group_rows(m: Samples, group: str) -> dict[tuple[str, str], float]:
    rows = {}
    for labels, v in series(m, "ecomind_consumergroup_lag").items():
        d = dict(labels)
        if d["group"] == group:
            rows[(d["topic"], d.get("partition", "*"))] = v
    return rows


def _scrape_when(proc: SidecarProc, ok: Callable[[Samples], bool]) -> Samples:
    def check() -> Samples | None:
        m = proc.scrape()
        return m if ok(m) else None

    try:
        return wait_until(check, 60, what="lag series")
    except AssertionError:
        m = proc.scrape()
        groups = {dict(k)["group"] for k in series(m, "ecomind_consumergroup_members")}
        raise AssertionError({g: _group_rows(m, g) for g in groups}) from None


def test_own_group_and_others_through_metrics(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    outside = _setup(broker, names)
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=f"{names.app_id}|ext-{names.app_id}-.*",
        STREAMS_LAG_GROUPS_IGNORE=".*-skipme",
        STREAMS_LAG_SLO_SECONDS=f"ext-.*=30,{names.app_id}=5",
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        # The sidecar's own group (its app id) folds everything, commits, and is measured like any other.
        own = {(names.raw, "0"): 0.0, (names.raw, "1"): 0.0, (names.enriched, "0"): 0.0, (names.enriched, "1"): 0.0}
        m = _scrape_when(proc, lambda s: _group_rows(s, names.app_id) == own)
        assert _group_rows(m, outside) == {(names.raw, "0"): 3.0, (names.raw, "1"): 0.0}
        age = value(
            m, "ecomind_consumergroup_lag_seconds", kafka_cluster=TAPPED, group=outside, topic=names.raw, partition="0"
        )
        assert age is not None and 119 <= age <= 180, age  # never 0 while messages wait
        assert not _group_rows(m, f"ext-{names.app_id}-skipme")  # ignored by STREAMS_LAG_GROUPS_IGNORE
        assert value(m, "ecomind_consumergroup_members", kafka_cluster=TAPPED, group=names.app_id) == 1.0
        assert value(m, "ecomind_consumergroup_state", kafka_cluster=TAPPED, group=names.app_id, state="Stable") == 1.0
        assert value(m, "ecomind_consumergroup_lag_slo_seconds", kafka_cluster=TAPPED, group=outside) == 30.0
        assert value(m, "ecomind_consumergroup_lag_slo_seconds", kafka_cluster=TAPPED, group=names.app_id) == 5.0
        # The watched group (never committed) is still reported, explicitly, with the design's series.
        assert value(m, "ecomind_streams_watch_group_committed", topic=names.raw, partition="0") == 0.0
        assert value(m, "ecomind_worker_kafka_lag", topic=names.raw, partition="0") == 5.0
        assert value(m, "ecomind_streams_lag_seconds_unknown", topic=names.raw, partition="0") == 0.0
        taken = value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster=TAPPED)
        assert taken is not None and abs(time.time() - taken) < 10
        promtool_accepts(proc.get("/metrics")[1])
    finally:
        proc.stop()


@pytest.mark.kafka_only  # Tansu has no DeleteGroups
def test_topic_granularity_and_a_deleted_group(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    outside = _setup(broker, names)
    env = sidecar_env(
        broker, redis_server, names, STREAMS_LAG_GROUPS=f"ext-{names.app_id}-.*", STREAMS_LAG_GRANULARITY="topic"
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        m = _scrape_when(proc, lambda s: bool(_group_rows(s, outside)))
        assert _group_rows(m, outside) == {(names.raw, "*"): 3.0}
        age = value(m, "ecomind_consumergroup_lag_seconds", kafka_cluster=TAPPED, group=outside, topic=names.raw)
        assert age is not None and 119 <= age <= 180, age
        assert _group_rows(m, f"ext-{names.app_id}-skipme") == {(names.raw, "*"): 10.0}  # 5 + 5 with no commit on 1
        # The design document's series stay per partition for the watched group.
        assert {dict(k)["partition"] for k in series(m, "ecomind_worker_kafka_lag")} == {"0", "1"}
        asyncio.run(_delete_group(broker.bootstrap, outside))

        # Kafka 4.4 may still list a just-deleted group (no offsets, state Dead) for one probe cycle: wait for
        # every series of it to go, not only its lag rows.
        def gone(m: Samples) -> bool:
            members = [k for k in series(m, "ecomind_consumergroup_members") if dict(k)["group"] == outside]
            return not _group_rows(m, outside) and not members

        wait_until(lambda: gone(proc.scrape()), 30, what="deleted group's series gone")
        m = proc.scrape()
        assert gone(m)
        assert _group_rows(m, f"ext-{names.app_id}-skipme") == {(names.raw, "*"): 10.0}  # 5 + 5 with no commit on 1
    finally:
        proc.stop()


async def _delete_group(bootstrap: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        response = await admin._client.send(node, DeleteGroupsRequest([group]))
        assert [tuple(r) for r in response.results] == [(group, 0)]
    finally:
        await admin.close()
