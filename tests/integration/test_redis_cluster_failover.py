"""Faults of a Redis Cluster (three primaries with a replica each, on loopback) while the sidecar streams:
kill -9 of the primary serving the state's slot (its replica takes over) and the slot moved to another
primary key by key (MIGRATING/IMPORTING and MIGRATE, what `redis-cli --cluster reshard` does) mid-stream.
No fault surfaces as a lost, double or refused count (before the batch script refused to run on a slot
half moved, it ran on the target under ASK, created keys still on the source and the move stopped at
BUSYKEY); the recovery times are printed (docs/operations.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.redis_topologies import LocalCluster
from streams.local.sidecar_proc import wait_until
from tests.integration.conftest import Names
from tests.integration.failover_run import stream_through

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # the tests kill and reshard their own cluster
PASSWORD = "data-pw"


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[LocalCluster]:
    setup = LocalCluster(workdir / "cluster-failover", password=PASSWORD).start()
    yield setup
    setup.stop()


def test_the_slot_moved_to_another_primary_mid_stream_ends_exact(
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    tag = "{" + names.app_id + "}"
    moved_to: list[int] = []

    def reshard() -> None:
        source = cluster.primary_of(tag)
        target = next(n for n in cluster.primaries() if n.port != source.port)
        cluster.move_slot(tag + ":v3:offsets", target)
        moved_to.append(target.port)

    stream_through(broker, cluster, names, workdir / names.app_id, reshard, 73, "slot migration")
    assert cluster.primary_of(tag).port == moved_to[0]
    assert cluster.primary_of(tag).client(PASSWORD).exists(tag + ":v3:offsets") == 1


def test_kill_9_of_the_slot_primary_mid_stream_ends_exact(
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    tag = "{" + names.app_id + "}"
    killed: list[int] = []

    def crash() -> None:
        holder = cluster.primary_of(tag)
        killed.append(holder.port)
        holder.kill()

    recovery = stream_through(broker, cluster, names, workdir / names.app_id, crash, 79, "Cluster failover")
    survivor = next(n for n in cluster.nodes if n.port != killed[0])
    wait_until(lambda: survivor.client(PASSWORD).cluster("info")["cluster_state"] == "ok", 10, what="cluster ok")
    assert cluster.primary_of(tag).port != killed[0]
    # cluster-node-timeout 2 s, then the replica's election: seconds.
    assert recovery.first_write_s < 30
