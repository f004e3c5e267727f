"""In-memory Redis for the simulator, behind the client calls RedisStore makes.

The batch script is carried out in Python with the Lua script's semantics (offsets checked, then the
writes, the offsets last); the real script is exercised against a real redis-server by the integration
tests. Every call is a point the simulator schedules, and each can fail before it runs, or run and lose
its reply. Redis can restart empty or from an older snapshot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from tests.sim.world import World

# Write outcomes the simulator picks among.
OK, FAIL_BEFORE, LOST_REPLY = "ok", "fail_before", "lost_reply"


class SimRedis:
    def __init__(self, world: World) -> None:
        self.world = world
        self.data: dict[str, Any] = {}
        self.snapshots: list[dict[str, Any]] = []
        self.down = False

    # What RedisStore calls ---------------------------------------------------------------------------
    def register_script(self, lua: str) -> Callable[..., Any]:
        async def run(keys: list[str], args: list[Any]) -> Any:
            return await self._script(keys, args)

        return run

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        outcome = await self.world.point("redis.read", None)
        self._fail_if(outcome.redis, before=True)
        found = self.data.get(key, {})
        return [found.get(f) for f in fields]

    async def _script(self, keys: list[str], args: list[Any]) -> Any:
        payload = orjson.loads(args[0])
        outcome = await self.world.point("redis.write", None, (keys[0], payload))
        self._fail_if(outcome.redis, before=True)
        result = self.apply_payload(keys[0], payload)
        self._fail_if(outcome.redis, before=False)
        return result

    def _fail_if(self, outcome: str, before: bool) -> None:
        if self.down:
            raise RedisConnectionError("simulated: Redis is down")
        if before and outcome == FAIL_BEFORE:
            raise RedisConnectionError("simulated: connection reset before the request ran")
        if not before and outcome == LOST_REPLY:
            raise RedisTimeoutError("simulated: the request ran, its reply was lost")

    # The batch script, in Python -----------------------------------------------------------------------
    def apply_payload(self, offkey: str, p: dict[str, Any]) -> list[Any]:
        offsets = self.data.setdefault(offkey, {})
        for field, expected, _ in p["off"]:
            cur = offsets.get(field)
            if (expected == "" and cur is not None) or (expected != "" and cur != expected):
                return [0, field]
        self.world.check_write(p)
        for key, field, n in p["hincr"]:
            h = self.data.setdefault(key, {})
            h[field] = str(int(h.get(field, 0)) + int(n))
        for key, field, whole, rest in p["amount"]:
            h, lo = self.data.setdefault(key, {}), self.data.setdefault(key + p["lo"], {})
            total_lo = int(lo.get(field, 0)) + int(rest)
            carry, total_lo = divmod(total_lo, p["base"])
            h[field] = str(int(h.get(field, 0)) + int(whole) + carry)
            lo[field] = str(total_lo)
        for key, members in p["sadd"]:
            self.data.setdefault(key, set()).update(members)
        for field, _, new in p["off"]:
            offsets[field] = new
        return [1, ""]

    # Faults --------------------------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        self.snapshots.append(copy.deepcopy(self.data))

    def restart(self, from_snapshot: bool) -> None:
        self.data = copy.deepcopy(self.snapshots[-1]) if from_snapshot and self.snapshots else {}
