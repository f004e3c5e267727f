"""Failovers of a Sentinel-managed primary while the sidecar streams. kill -9: the sentinels promote the
replica, behind what the primary had acknowledged (replication is asynchronous; the test makes sure of
it), and the sidecar follows it, re-reads what it lacks and ends exact. A manual failover (SENTINEL
FAILOVER): the primary is demoted under the sidecar's connections, whose writes meet READONLY, retried
on the new primary, never counted as refused. The recovery times are printed (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.local.redis_topologies import SERVICE, LocalSentinel
from streams.local.scrape import value
from streams.local.sidecar_proc import wait_until
from tests.integration.conftest import Names
from tests.integration.failover_run import crash_ahead_of_the_replica, stream_through

WHAT, MANUAL = "Sentinel failover", "SENTINEL FAILOVER"
pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # the test kills its own Redis


def test_kill_9_of_the_primary_mid_stream_ends_exact(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    setup = LocalSentinel(workdir / f"sentinel-{names.app_id}", password="data-pw", down_after_ms=1000).start()
    try:
        old, new = setup.primary, setup.replica

        def crash() -> None:
            crash_ahead_of_the_replica(old, new, "data-pw")

        recovery = stream_through(broker, setup, names, workdir / names.app_id, crash, 71, WHAT)
        sentinel = setup.sentinels[0].client(None)
        promoted: tuple[str, int] = sentinel.sentinel_get_master_addr_by_name(SERVICE)  # type: ignore[assignment]
        assert int(promoted[1]) == new.port and new.client("data-pw").info("replication")["role"] == "master"
        # down-after 1 s, then an election: a few seconds, never the minute a client time-out would be.
        assert recovery.first_write_s < 30
        # The promoted replica lacked acknowledged writes: the sidecar noticed (a batch whose stored offsets
        # were not the ones it expected, or the rewind check) and re-read them; the figures are exact above.
        lost = [value(recovery.final, f"ecomind_streams_{n}_total") for n in ("batch_conflicts", "state_rewinds")]
        assert sum(n or 0 for n in lost) >= 1, lost
    finally:
        setup.stop()


def test_a_manual_failover_mid_stream_ends_exact(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    setup = LocalSentinel(workdir / f"sentinel-{names.app_id}", password="data-pw").start()
    try:
        old, new = setup.primary, setup.replica

        def fail_over() -> None:
            # The old primary stays a primary, taking the sidecar's writes, until the sentinels see it
            # again and demote it (about 8 s later, over 30 s on a loaded machine); then it drops them for
            # the new primary's data.
            setup.sentinels[0].client(None).sentinel_failover(SERVICE)
            wait_until(lambda: old.client("data-pw").info("replication")["role"] == "slave", 120, what="demoted")

        recovery = stream_through(broker, setup, names, workdir / names.app_id, fail_over, 83, MANUAL, 40_000)
        assert new.client("data-pw").info("replication")["role"] == "master"
        assert recovery.first_write_s < 30
    finally:
        setup.stop()
