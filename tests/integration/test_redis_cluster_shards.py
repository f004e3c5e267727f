"""Sharded state (STREAMS_REDIS_SHARDS=3, docs/design.md "Sharded state") on a real Redis Cluster of three
primaries with a replica each. The shards' hash tags `{app:s<k>}` may hash to slots of one primary, so each
test first places every shard's slot on a primary of its own, as an operator would with a reshard. Then:
exact figures end to end with each primary holding its shard's keys and nothing else of the app's state;
a restart with another shard count refused and writing nothing; one shard's slot moved to another primary
mid-stream, and kill -9 of one shard's primary mid-stream (its replica takes over), both ending exact with
the recovery times printed. Each shard's batch script checks its own slot (tables/script.py): here on a
cluster whose shards' slots are on three primaries, one of them moving."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest
import redis
from redis.crc import key_slot

from streams.local.redis_topologies import LocalCluster
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from tables.layout import marker_key
from tables.lease import legacy_lease_key
from tables.shards import ShardKeys, shard_tag
from tests.integration.conftest import Names
from tests.integration.failover_run import crash_ahead_of_the_replica, stream_through
from tests.integration.topology_run import assert_exact, assert_policy_refused, produce_truth, start_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # the tests kill and reshard their own cluster
PASSWORD = "shards-pw"
SHARDS = 3
ENV = {"STREAMS_REDIS_SHARDS": str(SHARDS)}


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[LocalCluster]:
    setup = LocalCluster(workdir / "cluster-shards", password=PASSWORD).start()
    yield setup
    setup.stop()


def place_shards(cluster: LocalCluster, app_id: str) -> dict[int, int]:
    """Shard k's slot on the k-th primary (by port), moved there while still empty; returns shard -> port
    once every live node, replicas included, routes each shard's slot there."""
    primaries = sorted(cluster.primaries(), key=lambda n: n.port)
    placement = {k: primaries[k].port for k in range(SHARDS)}
    for k, port in placement.items():
        offsets = ShardKeys(app_id, k).offsets
        if cluster.primary_of(offsets).port != port:
            cluster.move_slot(offsets, next(n for n in primaries if n.port == port))
    wait_until(lambda: _routed(cluster, app_id) == placement, 15, what="every node routing the shards' slots")
    return placement


def _routed(cluster: LocalCluster, app_id: str) -> dict[int, int] | None:
    """Shard -> port of the primary serving its slot, when every live node says the same."""
    views = []
    for node in cluster.nodes:
        if node.server and node.server.running():
            client = node.client(PASSWORD)
            slots = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            views.append(
                {k: _server_of(slots, int(client.cluster("keyslot", shard_tag(app_id, k)))) for k in range(SHARDS)}
            )
    return views[0] if all(v == views[0] for v in views) else None


def _server_of(slots: list, slot: int) -> int:  # type: ignore[type-arg]
    return next(int(primary[1]) for low, high, primary, *_ in slots if int(low) <= slot <= int(high))


def keys_by_primary(cluster: LocalCluster, app_id: str) -> dict[int, dict[int, set[str]]]:
    """Per primary's port, the sharded state's keys it holds, by shard."""
    found: dict[int, dict[int, set[str]]] = {}
    for node in cluster.primaries():
        held = found.setdefault(node.port, {})
        for key in node.client(PASSWORD).scan_iter(match="{" + app_id + ":s*", count=1000):
            held.setdefault(int(key[len(app_id) + 3 : key.index("}")]), set()).add(key)
    return found


def assert_placed(cluster: LocalCluster, app_id: str, placement: dict[int, int]) -> None:
    """Each primary holds exactly the keys of the shards placed on it, every shard its offsets and
    watermarks, and no primary any one-shard state."""
    found = keys_by_primary(cluster, app_id)
    for port, by_shard in found.items():
        assert set(by_shard) == {k for k, p in placement.items() if p == port}, (port, placement, by_shard)
    for k, port in placement.items():
        keys = ShardKeys(app_id, k)
        assert {keys.offsets, keys.watermarks} <= found[port][k], found[port][k]
    assert one_shard_state(cluster, app_id) == set(), "one-shard state beside the shards"


def one_shard_state(cluster: LocalCluster, app_id: str) -> set[str]:
    """Keys of one-shard state (`{app}:v3:...`) on any primary, but for layout 3's lease key (no state)."""
    found = {k for n in cluster.primaries() for k in n.client(PASSWORD).scan_iter(match="{" + app_id + "}:v*")}
    return found - {legacy_lease_key(app_id)}


def stored_offsets(cluster: LocalCluster, app_id: str, shard: int) -> dict[str, str]:
    offsets = ShardKeys(app_id, shard).offsets
    stored = cast(dict[str, str], cluster.primary_of(offsets).client(PASSWORD).hgetall(offsets))
    return {field: n for field, n in stored.items() if not field.endswith(":id")}  # topic IDs aside


def dumps(cluster: LocalCluster, app_id: str) -> dict[str, bytes]:
    """Every key of the sharded state with its serialized value, from every primary."""
    out: dict[str, bytes] = {}
    for node in cluster.primaries():
        raw = redis.Redis("127.0.0.1", node.port, password=PASSWORD, socket_timeout=5)
        for key in raw.scan_iter(match="{" + app_id + ":s*", count=1000):
            out[key.decode()] = raw.dump(key)  # type: ignore[assignment]
    return out


def test_each_shard_on_its_own_primary_ends_exact_and_another_count_is_refused(  # type: ignore[no-untyped-def]
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:
    placement = place_shards(cluster, names.app_id)
    assert len(set(placement.values())) == SHARDS
    produce_truth(broker.bootstrap, names, partitions=SHARDS)  # partition p in shard p mod 3: one each
    proc = start_sidecar(broker, cluster, names, workdir / names.app_id, STREAMS_REDIS_SHARDS=str(SHARDS))
    try:
        proc.wait_ready()
        assert_exact(proc, names)
        # Each shard's primary must be noeviction: the last shard's, which holds no label set, too.
        last = next(n for n in cluster.primaries() if n.port == placement[SHARDS - 1])
        assert_policy_refused(proc, last.client(PASSWORD), f"volatile-lru (primary 127.0.0.1:{last.port})")
    finally:
        proc.stop()
    assert_placed(cluster, names.app_id, placement)
    # The truth's raw events go round-robin over 3 partitions (3, 2 and 2), its 2 enriched to partitions 0
    # and 1: each shard's offsets are its own partition's, read to the end.
    raw, enriched = names.raw, names.enriched
    assert stored_offsets(cluster, names.app_id, 0) == {f"{raw}:0": "3", f"{enriched}:0": "1"}
    assert stored_offsets(cluster, names.app_id, 1) == {f"{raw}:1": "2", f"{enriched}:1": "1"}
    assert stored_offsets(cluster, names.app_id, 2) == {f"{raw}:2": "2"}  # enriched's partition 2 is empty

    # The same app with 2 shards: its shards 0 and 1 exist, partition 2 would be found unread in its shard
    # 0 and read again on top of shard 2's sums. Refused instead, before any write.
    before = dumps(cluster, names.app_id)
    assert cluster.primary_of(marker_key(names.app_id)).client(PASSWORD).get(marker_key(names.app_id)) == "3:s3"
    two = start_sidecar(broker, cluster, names, workdir / f"{names.app_id}-s2", STREAMS_REDIS_SHARDS="2")
    try:
        reason = wait_until(lambda: _layout_refusal(two), 60, what="not ready for the shard count")
        assert "state kept in 3 shards (STREAMS_REDIS_SHARDS=3)" in reason and "set to 2" in reason, reason
        # Refused for good, not only while starting: it stays so over several of its re-checks.
        wait_until(lambda: "this replica is set to 2" in two.log_tail(200_000), 30, what="the refusal logged")
        for _ in range(3):
            assert _layout_refusal(two) == reason
            assert dumps(cluster, names.app_id) == before, "nothing written by the refused replica"
            time.sleep(2)
        assert value(two.scrape(), "ecomind_streams_layout_refused") == 1.0
    finally:
        two.stop()
    assert dumps(cluster, names.app_id) == before and one_shard_state(cluster, names.app_id) == set()
    # Back to 3 shards, the state is the one left: exact again (a partition read again would count twice).
    again = start_sidecar(broker, cluster, names, workdir / f"{names.app_id}-again", STREAMS_REDIS_SHARDS="3")
    try:
        again.wait_ready()
        assert_exact(again, names)
    finally:
        again.stop()


def _layout_refusal(proc: SidecarProc) -> str | None:
    """The reason of the failing layout check on /ready, once not ready for it."""
    status, body = proc.get("/ready")
    if status != 503:
        return None
    check = next((c for c in orjson.loads(body)["checks"] if c["name"] == "layout_ok"), None)
    return check["reason"] if check and not check["ok"] else None


def test_one_shards_slot_moved_to_another_primary_mid_stream_ends_exact(  # type: ignore[no-untyped-def]
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:
    placement = place_shards(cluster, names.app_id)
    moving = ShardKeys(names.app_id, 1).offsets
    target = next(n for n in cluster.primaries() if n.port == placement[2])

    def reshard() -> None:
        cluster.move_slot(moving, target)

    home = workdir / names.app_id
    stream_through(broker, cluster, names, home, reshard, 89, "one shard's slot moved", extra_env=ENV)
    assert_placed(cluster, names.app_id, {**placement, 1: placement[2]})
    # Shard 1's own script saw its own slot moving (reply 5) and refused; no other shard's slot was seen so.
    slot = key_slot(moving.encode())
    moving_seen = set(re.findall(r"slot (\d+) of (\S+) is moving", (home / "sidecar.log").read_text()))
    assert moving_seen and {s for s, _ in moving_seen} == {str(slot)}, moving_seen
    assert all(key.startswith(shard_tag(names.app_id, 1)) for _, key in moving_seen), moving_seen


def test_kill_9_of_one_shards_primary_mid_stream_ends_exact(  # type: ignore[no-untyped-def]
    broker, cluster: LocalCluster, names: Names, workdir: Path
) -> None:
    placement = place_shards(cluster, names.app_id)
    victim = ShardKeys(names.app_id, 0).offsets  # shard 0 also holds the label admission

    def crash() -> None:
        primary = cluster.primary_of(victim)
        crash_ahead_of_the_replica(primary, cluster.replica_of(primary), PASSWORD)

    home = workdir / names.app_id
    recovery = stream_through(broker, cluster, names, home, crash, 97, "one shard's primary killed", extra_env=ENV)
    ok = lambda: all(n.client(PASSWORD).cluster("info")["cluster_state"] == "ok" for n in cluster.primaries())  # noqa: E731
    wait_until(ok, 10, what="cluster ok")
    promoted = cluster.primary_of(victim).port
    assert promoted != placement[0]
    assert_placed(cluster, names.app_id, {**placement, 0: promoted})
    # cluster-node-timeout 2 s, then the replica's election: seconds.
    assert recovery.first_write_s < 30
    # The promoted replica lacked acknowledged writes of shard 0 alone: its watermarks were behind the other
    # shards' offsets, so their partitions' members were read again (member re-read); the figures are
    # exact above, so their sums were not counted twice.
    assert (value(recovery.final, "ecomind_streams_state_rewinds_total") or 0) >= 1
    assert "member shards went back under" in (home / "sidecar.log").read_text()
