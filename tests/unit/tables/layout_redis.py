"""The layout scripts' Redis for unit tests: the real Lua scripts over the simulated keyspace, and the few
commands the callers send themselves (SCAN with Redis's paging, UNLINK, TYPE, EXISTS, HGETALL, CONFIG GET)."""

from __future__ import annotations

import re
import time
from typing import Any

from tables.layout import (
    marker_key,
)
from tables.lease import legacy_lease_key
from tests.sim.lua_redis import Keyspace, Scripts

APP = "app"


class LayoutRedis(Scripts):
    """The real scripts over the simulated keyspace, and the few commands the callers send themselves."""

    def __init__(self, keyspace: Keyspace) -> None:
        super().__init__(keyspace)
        self.scans, self.cursors = 0, [""]

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    async def config_get(self, name: str) -> dict[str, str]:
        return {name: "noeviction"}

    async def ping(self) -> bool:
        return True

    async def type(self, key: str) -> str:
        found = self.keyspace.data.get(key)
        return "none" if found is None else "hash" if isinstance(found, dict) else "string"

    async def get(self, key: str) -> str | None:
        return self.keyspace.call("GET", key)  # type: ignore[no-any-return]

    async def exists(self, *keys: str) -> int:
        return sum(1 for key in keys if self.keyspace.call("TYPE", key) != "none")

    async def hgetall(self, key: str) -> dict[str, str]:
        flat = self.keyspace.call("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        # Pages of `count` keys in name order, MATCH applied per page as Redis does; a cursor is where the
        # last page ended, so keys deleted meanwhile never make it skip one (Redis's SCAN guarantee).
        self.scans += 1
        after = self.cursors[cursor] if cursor else ""
        page = sorted(k for k in self.keyspace.data if k > after)[:count]
        matching = [k for k in page if _glob(match).fullmatch(k)]
        if len(page) < count:
            return 0, matching
        self.cursors.append(page[-1])
        return len(self.cursors) - 1, matching

    async def unlink(self, *keys: str) -> int:
        return self.keyspace.call("DEL", *keys)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        pass

    @property
    def data(self) -> dict[str, Any]:
        return self.keyspace.data


def layout_redis(clock: list[float] | None = None) -> LayoutRedis:
    return LayoutRedis(Keyspace(time.time if clock is None else lambda: clock[0]))


def _glob(pattern: str) -> re.Pattern[str]:
    out, chars = "", iter(pattern)
    for c in chars:
        out += re.escape(next(chars)) if c == "\\" else ".*" if c == "*" else "." if c == "?" else re.escape(c)
    return re.compile(out)


def stored_offsets(redis: Scripts, key: str) -> None:
    redis.keyspace.call("HSET", key, "raw:0", "42", "raw:0:id", "AAAAAAAAAAAAAAAAAAAAAA")


# The purge ------------------------------------------------------------------------------------------
def fleet(old: int, new: int) -> LayoutRedis:
    redis = layout_redis()
    keys = {f"{{app}}:v2:org:o{i}": "1" for i in range(old)} | {f"{{app}}:v3:org:o{i}": "1" for i in range(new)}
    keys |= {"{app}:v2:offsets": "h", "{app}:v30:offsets": "h", "{other}:v2:offsets": "h", "{app}:exporter": "h"}
    keys |= {marker_key(APP): "3", legacy_lease_key(APP): "pod:1"}
    for key, value in keys.items():
        redis.keyspace.call("SET", key, value)
    return redis
