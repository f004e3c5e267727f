"""The lease loop's checks with Redis clients that refuse or answer: Redis's health and its eviction policy."""

from __future__ import annotations

import asyncio

from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.lease import Lease
from tests.unit.streams.lease_redis import lease_sidecar, one_round


async def test_a_refused_config_get_makes_the_replica_not_ready_but_keeps_the_lease() -> None:
    sidecar = lease_sidecar(policy=None)
    await one_round(sidecar)
    st = sidecar.status
    assert (st.redis_policy, st.redis_policy_ok, st.leader, st.redis_ok) == ("unknown", False, True, True)


async def test_an_evicting_policy_is_not_ready_and_noeviction_is() -> None:
    sidecar = lease_sidecar(policy="allkeys-lru")
    await one_round(sidecar)
    assert (sidecar.status.redis_policy, sidecar.status.redis_policy_ok) == ("allkeys-lru", False)
    sidecar.redis.policy = "noeviction"  # type: ignore[attr-defined]
    await one_round(sidecar)
    assert sidecar.status.redis_policy_ok is True


async def test_a_policy_check_that_hangs_delays_no_round_and_one_that_fails_keeps_the_last_policy() -> None:
    sidecar = lease_sidecar(policy="noeviction")
    await one_round(sidecar)
    assert sidecar.status.redis_policy == "noeviction" and sidecar.status.leader
    sidecar.redis.config_hangs = True  # type: ignore[attr-defined]
    await one_round(sidecar)
    await one_round(sidecar)  # the hanging check is not started twice, and the rounds go on
    assert sidecar.status.leader and sidecar.status.redis_ok
    assert sidecar._policy_check is not None and not sidecar._policy_check.done()
    sidecar._policy_check.cancel()
    await asyncio.gather(sidecar._policy_check, return_exceptions=True)
    sidecar.redis.config_hangs = False  # type: ignore[attr-defined]
    sidecar.redis.config_fails = ConnectionError("node gone")  # type: ignore[attr-defined]
    await one_round(sidecar)
    # Unanswered is not "refused": the policy stays as last read, the replica stays ready for it.
    assert (sidecar.status.redis_policy, sidecar.status.redis_policy_ok) == ("noeviction", True)


async def test_a_fresh_replica_exports_at_once_and_a_second_one_does_not() -> None:
    first = lease_sidecar("noeviction")
    await one_round(first)
    assert first.status.leader and first.exporter.exporting(first.exporter.clock())
    second = Sidecar(Settings(), 6067, redis=first.redis)
    await one_round(second)
    assert not second.status.leader and not second.exporter.exporting(second.exporter.clock())


async def test_a_failed_round_marks_redis_down_and_quiets_the_exporter() -> None:
    sidecar = lease_sidecar("noeviction")
    await one_round(sidecar)
    assert sidecar.status.leader
    sidecar._lease_round_done(None, ConnectionError("gone"))
    sidecar.exporter.lapse()
    assert not sidecar.exporter.exporting(sidecar.exporter.clock())
    sidecar._lease_round_done(Lease.KEPT, None)
    assert sidecar.status.redis_ok and not sidecar.status.leader
