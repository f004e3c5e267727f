"""The simulator's Redis behind the real RedisStore: the real batch script (tables/script.py) run in Lua
over the simulated keyspace (tests/sim/lua_redis.py), one script and one definition.

Every call is a point the simulator schedules, and each can fail before it runs, or run and lose its
reply. Redis can be down, over maxmemory (the script's shebang makes Redis refuse it whole), restart
empty or from an older snapshot. The checker looks at each batch just before the script's first write,
when the script has passed every check that refuses it whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts

if TYPE_CHECKING:
    from tests.sim.world import World

# Write outcomes the simulator picks among.
OK, FAIL_BEFORE, LOST_REPLY = "ok", "fail_before", "lost_reply"


class SimRedis(Scripts):
    def __init__(self, world: World) -> None:
        super().__init__(Keyspace(world.now_s), shared=True)
        self.world = world
        self.snapshots: list[tuple[dict[str, Any], dict[str, int]]] = []
        self.down = False

    @property
    def data(self) -> dict[str, Any]:
        return self.keyspace.data

    # What RedisStore calls ---------------------------------------------------------------------------
    def register_script(self, source: str) -> Callable[..., Any]:
        async def run(keys: list[str], args: list[Any]) -> Any:
            outcome = await self.world.point("redis.write", None, (source, list(keys), list(args)))
            self._fail_if(outcome.redis, before=True)
            result = self.apply(source, keys, args)
            self._fail_if(outcome.redis, before=False)
            return result

        return run

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        outcome = await self.world.point("redis.read", None)
        self._fail_if(outcome.redis, before=True)
        return self.keyspace.hmget(key, fields)

    def apply(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """The script runs now; the checker sees its batch before the first write."""
        payload = orjson.loads(args[0])
        self.on_first_write = lambda: self.world.check_write(payload)
        try:
            return self.run(source, keys, args)
        finally:
            self.on_first_write = None

    def _fail_if(self, outcome: str, before: bool) -> None:
        if self.down:
            raise RedisConnectionError("simulated: Redis is down")
        if before and outcome == FAIL_BEFORE:
            raise RedisConnectionError("simulated: connection reset before the request ran")
        if not before and outcome == LOST_REPLY:
            raise RedisTimeoutError("simulated: the request ran, its reply was lost")

    # Faults --------------------------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        self.keyspace.expire_all()
        self.snapshots.append(copy.deepcopy((self.keyspace.data, self.keyspace.expires_ms)))

    def restart(self, from_snapshot: bool) -> None:
        found = copy.deepcopy(self.snapshots[-1]) if from_snapshot and self.snapshots else ({}, {})
        self.keyspace.data, self.keyspace.expires_ms = found
