"""The sidecar on a Redis Cluster (three primaries with a replica each, on loopback) over TLS with a
password: exact figures, the state in the slot of its hash tag, every primary's eviction policy checked,
an unreachable cluster refused at once rather than hanging, and the layout tool on the app's slot and on
four shards' slots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.proc import free_port
from streams.local.redis_topologies import LocalCluster
from tests.integration.conftest import Names, self_signed
from tests.integration.topology_run import (
    assert_exact,
    assert_policy_refused,
    assert_unreachable,
    produce_truth,
    start_sidecar,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[LocalCluster]:
    home = workdir / "cluster"
    home.mkdir()
    setup = LocalCluster(home, password="data-pw", tls=self_signed(home)).start()
    yield setup
    setup.stop()


def test_exact_figures_on_a_cluster_over_tls(broker, cluster: LocalCluster, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    assert cluster.url.startswith("rediss+cluster://:data-pw@127.0.0.1:") and "REDIS_TLS_CA_FILE" in cluster.env
    produce_truth(broker.bootstrap, names)
    proc = start_sidecar(broker, cluster, names, workdir / names.app_id)
    try:
        proc.wait_ready()
        assert_exact(proc, names)
        # Every key of the app is in its hash tag's slot, on the primary serving it.
        offsets = "{" + names.app_id + "}:v3:offsets"
        holder = cluster.primary_of(offsets).client("data-pw")
        written = holder.hgetall(offsets)
        assert written[f"{names.raw}:0"] == "4" and written[f"{names.raw}:1"] == "3"
        tagged = holder.keys("{" + names.app_id + "}*")
        assert len(tagged) > 10 and offsets in tagged
        # The state's slot may move to any primary: one that does not hold it now is checked too.
        other = next(n for n in cluster.primaries() if n.port != cluster.primary_of(offsets).port)
        assert_policy_refused(proc, other.client("data-pw"), f"volatile-lru (primary 127.0.0.1:{other.port})")
    finally:
        proc.stop()


def test_an_unreachable_cluster_is_not_ready_and_says_so(
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    nobody = f"rediss+cluster://:data-pw@127.0.0.1:{free_port()}"
    proc = start_sidecar(broker, cluster, names, workdir / names.app_id, url=nobody)
    try:
        assert_unreachable(proc, "Redis Cluster cannot be connected")
    finally:
        proc.stop()


def test_the_layout_tool_finds_and_purges_an_old_layout_in_the_app_slot(cluster: LocalCluster, names: Names) -> None:
    tag = "{" + names.app_id + "}"
    holder = cluster.primary_of(tag).client("data-pw")
    for i in range(1_200):  # more than one SCAN page and one UNLINK batch
        holder.set(f"{tag}:v2:k{i}", "1")
    holder.hset(f"{tag}:v2:offsets", "t:0", "5")
    holder.set(f"{tag}:v3:kept", "1")
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(ROOT)}
    status = _layout(env, "status", "--app-id", names.app_id)
    assert status.returncode == 0 and f"layout 2: state present ({tag}:v2:offsets)" in status.stdout, status
    purged = _layout(env, "purge-layout", "--app-id", names.app_id, "--layout", "2")
    assert purged.returncode == 0 and "deleted 1201 keys" in purged.stdout, purged
    assert holder.keys(f"{tag}*") == [f"{tag}:v3:kept"]
    # The runbook's `sredis` on a cluster: the command goes to the primary of its key's slot.
    command = [sys.executable, "-m", "streams.tools.redis_command", "GET", f"{tag}:v3:kept"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "1\n"), done


def test_the_layout_tool_places_each_shard_and_purges_them_all(cluster: LocalCluster, names: Names) -> None:
    """Four shards on three primaries: at least two share one, which status must name from the cluster's own
    slot map; the purge finds each shard's keys on its primary."""
    app, shards = names.app_id, 4
    tags = ["{" + f"{app}:s{k}" + "}" for k in range(shards)]
    cluster.primary_of("{" + app + "}").client("data-pw").set("{" + app + "}:layout", f"3:s{shards}")
    for k, tag in enumerate(tags):
        holder = cluster.primary_of(tag).client("data-pw")
        holder.hset(f"{tag}:v3:offsets", f"t:{k}", "5")
        for i in range(300):
            holder.set(f"{tag}:v3:k{i}", "1")
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(ROOT), "STREAMS_REDIS_SHARDS": str(shards)}
    status = _layout(env, "status", "--app-id", app)
    assert status.returncode == 0 and f"(layout 3 in {shards} shards)" in status.stdout, status
    by_port: dict[int, list[int]] = {}
    for k, tag in enumerate(tags):
        node = cluster.primary_of(tag)
        slot = int(node.client("data-pw").cluster("keyslot", tag))
        assert f"shard {k}: hash tag {tag}, slot {slot}, primary 127.0.0.1:{node.port} (state present)" in status.stdout
        by_port.setdefault(node.port, []).append(k)
    crowded = [f"shards {', '.join(map(str, ks))} sit on one primary (127.0.0.1:{p})" for p, ks in by_port.items()]
    warned = [line.split(": ")[1] for line in status.stderr.splitlines() if line.startswith("warning: ")]
    assert sorted(warned) == sorted(c for c, ks in zip(crowded, by_port.values(), strict=True) if len(ks) > 1)
    assert warned, "four shards on three primaries: one holds two"
    purged = _layout(env, "purge-layout", "--app-id", app, "--layout", "3")
    assert purged.returncode == 0 and f"deleted {shards * 301} keys" in purged.stdout, purged
    assert "cleared the marker" in purged.stdout
    for node in cluster.primaries():
        assert node.client("data-pw").keys("{" + app + "*") == []


def _layout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "streams.tools.layout", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
