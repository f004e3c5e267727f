"""The lease loop's checks with Redis clients that refuse or answer: Redis's health and its eviction policy."""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import ResponseError

from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.lease import Lease
from tests.sim.lua_redis import Keyspace, Scripts


class _Redis(Scripts):
    """The real lease scripts over a simulated keyspace; CONFIG GET answers `policy` or is refused."""

    def __init__(self, policy: str | None) -> None:
        super().__init__(Keyspace(time.time))
        self.policy = policy

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    async def config_get(self, name: str) -> dict[str, str]:
        if self.policy is None:
            raise ResponseError("unknown command 'CONFIG'")
        return {name: self.policy}


def _sidecar(policy: str | None) -> Sidecar:
    return Sidecar(Settings(), 6066, redis=_Redis(policy))  # type: ignore[arg-type]


async def _one_round(sidecar: Sidecar) -> None:
    """One pass of the real lease loop, stopped at its first sleep."""
    task = asyncio.create_task(sidecar._run_lease())
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_refused_config_get_makes_the_replica_not_ready_but_keeps_the_lease() -> None:
    sidecar = _sidecar(policy=None)
    await _one_round(sidecar)
    st = sidecar.status
    assert (st.redis_policy, st.redis_policy_ok, st.leader, st.redis_ok) == ("unknown", False, True, True)


async def test_an_evicting_policy_is_not_ready_and_noeviction_is() -> None:
    sidecar = _sidecar(policy="allkeys-lru")
    await _one_round(sidecar)
    assert (sidecar.status.redis_policy, sidecar.status.redis_policy_ok) == ("allkeys-lru", False)
    sidecar.redis.policy = "noeviction"  # type: ignore[attr-defined]
    await _one_round(sidecar)
    assert sidecar.status.redis_policy_ok is True


async def test_a_fresh_replica_exports_at_once_and_a_second_one_does_not() -> None:
    first = _sidecar("noeviction")
    await _one_round(first)
    assert first.status.leader and first.exporter.exporting(first.exporter.clock())
    second = Sidecar(Settings(), 6067, redis=first.redis)
    await _one_round(second)
    assert not second.status.leader and not second.exporter.exporting(second.exporter.clock())


async def test_a_failed_round_marks_redis_down_and_quiets_the_exporter() -> None:
    sidecar = _sidecar("noeviction")
    await _one_round(sidecar)
    assert sidecar.status.leader
    sidecar._lease_round_done(None, ConnectionError("gone"))
    sidecar.exporter.lapse()
    assert not sidecar.exporter.exporting(sidecar.exporter.clock())
    sidecar._lease_round_done(Lease.KEPT, None)
    assert sidecar.status.redis_ok and not sidecar.status.leader
