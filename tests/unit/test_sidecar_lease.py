"""The lease round with Redis clients that refuse or answer: the exporter role and Redis's health."""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import ResponseError

from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.store import Lease


class _Redis:
    """Answers the lease script with `lease`; CONFIG GET answers `policy` or is refused."""

    def __init__(self, policy: str | None, lease: Lease) -> None:
        self.policy = policy
        self.lease = lease

    def register_script(self, lua: str) -> Any:
        async def run(keys: list[str], args: list[str]) -> int:
            return int(self.lease)

        return run

    async def config_get(self, name: str) -> dict[str, str]:
        if self.policy is None:
            raise ResponseError("unknown command 'CONFIG'")
        return {name: self.policy}


def _sidecar(policy: str | None, lease: Lease = Lease.TAKEN) -> Sidecar:
    return Sidecar(Settings(exporter_handover_seconds=30.0), 6066, redis=_Redis(policy, lease))  # type: ignore[arg-type]


async def test_a_refused_config_get_makes_the_replica_not_ready_but_keeps_the_lease() -> None:
    sidecar = _sidecar(policy=None)
    await sidecar._lease_round(ttl_ms=10_000)
    st = sidecar.status
    assert (st.redis_policy, st.redis_policy_ok, st.leader) == ("unknown", False, True)


async def test_an_evicting_policy_is_not_ready_and_noeviction_is() -> None:
    sidecar = _sidecar(policy="allkeys-lru")
    await sidecar._lease_round(ttl_ms=10_000)
    assert (sidecar.status.redis_policy, sidecar.status.redis_policy_ok) == ("allkeys-lru", False)
    sidecar.redis.policy = "noeviction"  # type: ignore[attr-defined]
    await sidecar._lease_round(ttl_ms=10_000)
    assert sidecar.status.redis_policy_ok is True


async def test_a_lease_taken_from_another_replica_waits_and_one_kept_from_a_restart_does_not() -> None:
    taken = _sidecar("noeviction", Lease.TAKEN)
    await taken._lease_round(ttl_ms=10_000)
    since = taken.status.exporter_since_s
    assert since is not None
    assert not taken.exporting(taken.status.replica_id, since + 29.0)
    assert taken.exporting(taken.status.replica_id, since + 30.0)
    # A later round that still holds the lease does not restart (or skip) the wait.
    taken.redis.lease = Lease.KEPT  # type: ignore[attr-defined]
    await taken._lease_round(ttl_ms=10_000)
    assert taken.status.exporter_since_s == since
    kept = _sidecar("noeviction", Lease.KEPT)
    await kept._lease_round(ttl_ms=10_000)
    assert kept.exporting(kept.status.replica_id, time.time())
    assert not kept.exporting("another:6066", time.time())
