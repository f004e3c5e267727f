"""The simulator's Redis behind the real RedisStore: the real batch script (tables/script.py) run in Lua
over the simulated keyspace (tests/sim/lua_redis.py), one script and one definition.

Every call is a point the simulator schedules, and each can fail before it runs, or run and lose its
reply. Redis can be down, over maxmemory (the script's shebang makes Redis refuse it whole), restart
empty or from an older snapshot. The checker looks at each batch just before the script's first write,
when the script has passed every check that refuses it whole. With `Faults.foreign_values`, a write may
meet a foreign value (another type, a field not a number) in a key it uses, put back right after it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts, _arg

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
        self.foreign_rng = random.Random(world.seed ^ 0xF0E1)  # apart from the schedule's draws

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
        restore = self._foreign_value(payload) if self.world.faults.foreign_values else None
        self.decoded = (_arg(args[0]), payload)  # the script decodes the same text: as Scripts.run passes it
        try:
            return self.run(source, keys, args)
        finally:
            self.on_first_write = self.decoded = None
            if restore is not None:
                restore()

    def _foreign_value(self, payload: dict[str, Any]) -> Callable[[], None] | None:
        """Maybe put a foreign value where this write reads or writes, and how to put back what was there:
        the batch script must refuse it whole (an operator repairs it; the tap writes the batch again)."""
        if self.foreign_rng.random() >= 0.15:
            return None
        # Fields the batch increments (a number it cannot add to is foreign there too) or compares.
        fields = [(h[0], h[1], True) for h in payload["hincr"]] + [(m[0], m[1], False) for m in payload["hmax"]]
        fields += [(a[0] + suffix, a[1], True) for a in payload["amount"] for suffix in ("", payload["lo"])]
        fields += [(u[1], r[0], True) for u in payload["usersadd"] for r in u[3]]
        keys = [k for k, *_ in fields] + [e[0] for e in payload["expire"]] + [a[0] for a in payload["admit"]]
        keys += [s[0] for s in payload["sadd"]] + [u[0] for u in payload["usersadd"]] + [payload["lineage"][0]]
        data, expires = self.keyspace.data, self.keyspace.expires_ms
        if self.foreign_rng.random() < 0.6 and fields:
            key, field, incremented = self.foreign_rng.choice(sorted(fields))
            value = self.foreign_rng.choice(("x1", str(2**63 - 1))) if incremented else "x1"
            had = data.get(key, {}).get(field) if isinstance(data.get(key), dict) else None
            data.setdefault(key, {})[field] = value
            self.world.trace.append(f"foreign value in {key} {field}: {value}")

            def put_back_field() -> None:
                found = data.get(key)
                if isinstance(found, dict) and found.get(field) == value:
                    if had is None:
                        del found[field]
                        if not found:
                            del data[key]
                    else:
                        found[field] = had

            return put_back_field
        key = self.foreign_rng.choice(sorted(set(keys)))
        had, had_expiry = data.get(key), expires.pop(key, None)
        data[key] = {"foreign": "1"} if isinstance(had, str) or key == payload["lineage"][0] else "foreign"
        self.world.trace.append(f"foreign type in {key}")

        def put_back_key() -> None:
            data.pop(key, None)
            expires.pop(key, None)
            if had is not None:
                data[key] = had
            if had_expiry is not None:
                expires[key] = had_expiry

        return put_back_key

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
