"""Redis scripts run for real, in Lua 5.1 (Redis's own Lua) through lupa, over a simulated keyspace.

The keyspace implements the commands the lease scripts call, with Redis's replies as Lua sees them
(nil as false, integers, arrays as tables, TIME as two strings) and key expiry on the caller's clock. A
script that raises keeps the writes it made before the error, as Redis does. A differential test holds
it to a real redis-server (tests/integration/test_lease_script.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lupa.lua51 import LuaRuntime
from redis.exceptions import ResponseError


class Keyspace:
    def __init__(self, clock_s: Callable[[], float]) -> None:
        self.clock_s = clock_s
        self.data: dict[str, Any] = {}
        self.expires_ms: dict[str, int] = {}

    def now_ms(self) -> int:
        return int(self.clock_s() * 1000)

    def _live(self, key: str) -> Any:
        if key in self.expires_ms and self.expires_ms[key] <= self.now_ms():
            self.data.pop(key, None)
            self.expires_ms.pop(key, None)
        return self.data.get(key)

    def _hash(self, key: str) -> dict[str, str]:
        found = self._live(key)
        if found is None:
            found = self.data[key] = {}
        if not isinstance(found, dict):
            raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return found

    def call(self, command: str, *args: Any) -> Any:
        name, a = command.upper(), [_text(x) for x in args]
        if name == "TIME":
            now_us = int(self.clock_s() * 1_000_000)
            return [str(now_us // 1_000_000), str(now_us % 1_000_000)]
        if name == "GET":
            found = self._live(a[0])
            if isinstance(found, dict):
                raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
            return found
        if name == "SET":
            self.data[a[0]] = a[1]
            self.expires_ms.pop(a[0], None)
            if len(a) >= 4 and a[2].upper() == "PX":
                self.expires_ms[a[0]] = self.now_ms() + int(a[3])
            return "OK"
        if name == "DEL":
            gone = [k for k in a if self._live(k) is not None]
            for k in gone:
                self.data.pop(k, None)
                self.expires_ms.pop(k, None)
            return len(gone)
        if name == "PTTL":
            if self._live(a[0]) is None:
                return -2
            return self.expires_ms[a[0]] - self.now_ms() if a[0] in self.expires_ms else -1
        if name in ("PEXPIRE", "PERSIST"):
            if self._live(a[0]) is None:
                return 0
            if name == "PERSIST":
                return 1 if self.expires_ms.pop(a[0], None) is not None else 0
            self.expires_ms[a[0]] = self.now_ms() + int(a[1])
            return 1
        if name == "HSET":
            h, pairs = self._hash(a[0]), a[1:]
            added = sum(1 for f in pairs[::2] if f not in h)
            h.update(zip(pairs[::2], pairs[1::2], strict=True))
            return added
        if name in ("HGET", "HMGET", "HGETALL", "HDEL"):
            found = self._live(a[0])
            h = {} if found is None else found
            if not isinstance(h, dict):
                raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
            if name == "HDEL":
                gone = [f for f in a[1:] if h.pop(f, None) is not None]
                if not h:
                    self.data.pop(a[0], None)  # Redis deletes a hash whose last field goes
                    self.expires_ms.pop(a[0], None)
                return len(gone)
            if name == "HGETALL":
                return [x for pair in h.items() for x in pair]
            return h.get(a[1]) if name == "HGET" else [h.get(f) for f in a[1:]]
        raise ResponseError(f"the simulated keyspace does not implement {name}")

    # What the Python client reads directly ----------------------------------------------------------
    def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        result = self.call("HMGET", key, *fields)
        return list(result)


class Scripts:
    """`register_script` as redis-py has it, running each script's Lua against `keyspace`."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self.lua = LuaRuntime(unpack_returned_tuples=False)
        self._call = self.lua.eval("function(py) return function(...) return py(...) end end")(self._redis_call)

    def _redis_call(self, command: Any, *args: Any) -> Any:
        # A ResponseError raised here stops the script where it stands, writes made so far kept, and
        # reaches the caller as itself: what redis-py raises for a script's runtime error.
        return self._to_lua(self.keyspace.call(str(command), *args))

    def _to_lua(self, reply: Any) -> Any:
        if reply is None:
            return False
        if isinstance(reply, list):
            return self.lua.table_from([self._to_lua(x) for x in reply])
        return reply

    def register_script(self, source: str) -> Callable[..., Any]:
        if source.startswith("#!"):  # Redis 7's shebang line (flags) is not Lua
            source = "--" + source
        body = self.lua.eval(f"function(KEYS, ARGV, redis)\n{source}\nend")

        async def run(keys: list[str], args: list[Any]) -> Any:
            redis = self.lua.table_from({"call": self._call})
            reply = body(self.lua.table_from(list(keys)), self.lua.table_from([str(x) for x in args]), redis)
            return _from_lua(reply)

        return run


def _from_lua(value: Any) -> Any:
    """Redis's conversion of a script's reply: numbers to integers (truncated), tables to arrays up to the
    first nil, false to nil."""
    if value is None or value is False:
        return None
    if isinstance(value, bool):
        return 1
    if isinstance(value, float | int):
        return int(value)
    if isinstance(value, str | bytes):
        return value
    out, i = [], 1
    while value[i] is not None:
        out.append(_from_lua(value[i]))
        i += 1
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
