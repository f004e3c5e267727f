"""The sidecar's lease loop over the real lease script on the simulated keyspace: a Redis fake, a sidecar
built on it, and one round of the loop."""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import ResponseError

from streams.settings import Settings
from streams.sidecar import Sidecar
from tests.sim.lua_redis import Keyspace, Scripts


class LeaseRedis(Scripts):
    """The real lease scripts over a simulated keyspace; CONFIG GET answers `policy` or is refused."""

    def __init__(self, policy: str | None) -> None:
        super().__init__(Keyspace(time.time))
        self.policy = policy
        self.config_hangs = False  # CONFIG GET never answers (a slow or frozen node)
        self.config_fails: Exception | None = None  # CONFIG GET fails as a connection would

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    async def get(self, key: str) -> str | None:
        return self.keyspace.call("GET", key)  # type: ignore[no-any-return]

    async def exists(self, *keys: str) -> int:
        return sum(1 for key in keys if self.keyspace.call("TYPE", key) != "none")

    async def config_get(self, name: str) -> dict[str, str]:
        if self.config_hangs:
            await asyncio.Event().wait()
        if self.config_fails is not None:
            raise self.config_fails
        if self.policy is None:
            raise ResponseError("unknown command 'CONFIG'")
        return {name: self.policy}


def lease_sidecar(policy: str | None) -> Sidecar:
    return Sidecar(Settings(), 6066, redis=LeaseRedis(policy))  # type: ignore[arg-type]


async def one_round(sidecar: Sidecar) -> None:
    """One pass of the real lease loop, stopped at its first sleep."""
    task = asyncio.create_task(sidecar._run_lease())
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if sidecar._policy_check is not None and not getattr(sidecar.redis, "config_hangs", False):
        await sidecar._policy_check  # runs beside the round: its outcome is what the tests read
