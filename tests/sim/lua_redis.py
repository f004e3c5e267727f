"""Redis scripts run for real, in Lua 5.1 (Redis's own Lua) through lupa, over a simulated keyspace.

The keyspace (tests/sim/keyspace.py) implements the commands the project's scripts call; this module
gives a script what Redis gives it: KEYS and ARGV, `redis.call` and `redis.pcall` with Redis's
conversions both ways (nil bulk as false, status replies as {ok = ...}, arrays as tables; a number
argument as its integer text, a script's numbers truncated to integers, false as nil, a table as an
array up to its first nil), `cjson`, and the shebang's flags with Redis 7's refusals (over maxmemory a
script without `allow-oom` is refused whole; `no-writes` refuses its writes). A script that raises keeps
the writes it made before the error, as Redis does; the error reaches the caller as the ResponseError
redis-py raises. Differential tests hold it to a real redis-server (tests/integration/test_lease_script.py,
tests/integration/test_business_script.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from lupa.lua51 import LuaError, LuaRuntime, lua_type
from redis.exceptions import OutOfMemoryError, ResponseError

from tests.sim.keyspace import Keyspace, Status, _text

__all__ = ["Keyspace", "Scripts", "Status", "shebang_flags"]

_MIN = -(2**63)
_ARG_ERROR = "Lua redis lib command arguments must be strings or integers"
_SCALARS = frozenset({str, int, float, bool})
_FLAGS = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"})
_PACKED = 200  # values passed to or returned from one Lua call at most (Lua's stack bounds them)
# A script's reply table read as _from_lua reads it (indexed, not raw): `err`, `ok`, the length of its
# array up to the first nil, and that array's values when there are few enough to return at once.
_READ_REPLY = """function(t)
  local n, items = 0, {}
  while t[n + 1] ~= nil do n = n + 1; items[n] = t[n] end
  if n > 200 then return t.err, t.ok, n end
  return t.err, t.ok, n, unpack(items, 1, n)
end"""


def shebang_flags(source: str) -> frozenset[str] | None:
    """The flags a script's `#!lua` line declares (None: no shebang, a pre-7 script), or Redis's refusal."""
    if not source.startswith("#!"):
        return None
    words = source.split("\n", 1)[0].split()
    if words[0] != "#!lua":
        raise ResponseError(f"Unexpected engine in script shebang: {words[0][2:]}")
    flags: set[str] = set()
    for word in words[1:]:
        if not word.startswith("flags="):
            raise ResponseError(f"Unknown lua shebang option: {word}")
        for flag in filter(None, word[len("flags=") :].split(",")):
            if flag not in _FLAGS:
                raise ResponseError(f"Unexpected flag in script shebang: {flag}")
            flags.add(flag)
    return frozenset(flags)


class Scripts:
    """`register_script` as redis-py has it, running each script's Lua against `keyspace`."""

    def __init__(self, keyspace: Keyspace, shared: bool = False) -> None:
        """`shared`: on the process's one Lua runtime, each script compiled once (the simulator makes a
        Redis per schedule); scripts keep no state between runs, so nothing leaks from one to the next."""
        self.keyspace = keyspace
        self.lua, self._bodies = _shared() if shared else (_runtime(), {})
        self._null = self.lua.eval("newproxy()")  # cjson.null: one value, equal only to itself
        make = self._helper(
            "function(decode, null) return {"
            " status_reply = function(s) return {ok = s} end,"
            " error_reply = function(s) return {err = s} end,"
            " cjson = {decode = function(s) return decode(s) end, null = null}} end"
        )
        # Lua holds these functions and Python the Lua tables: through a weak reference, so that the two
        # make no cycle (which neither garbage collector can see) and a dropped Scripts is freed.
        me = weakref.ref(self)
        made = make(lambda text: me()._decode(text), self._null)  # type: ignore[union-attr]

        def call(*a: Any) -> Any:
            scripts: Any = me()
            if not a or type(a[0]) is not str:
                return scripts._redis_call(*a)  # its refusals
            # _redis_call's steps, inlined: a batch makes hundreds of calls, most of them with text only,
            # which goes to the keyspace as it came (a loop that finds no number costs less than a copy).
            args: Sequence[Any] = a[1:]
            for x in args:
                if type(x) is not str:
                    args = [x if type(x) is str else _script_arg(x) for x in args]
                    break
            reply = scripts.keyspace.run(a[0], args)
            if type(reply) is str or type(reply) is int:
                return reply
            return False if reply is None else scripts._to_lua(reply)  # a nil bulk, frequent: at once

        # Python callables, not Lua functions around them, which would double the cost of a call.
        self._redis = self.lua.table_from(
            {
                "call": call,
                "pcall": lambda *a: me()._redis_pcall(*a),  # type: ignore[union-attr]
            }
        )
        self._redis.status_reply, self._redis.error_reply = made.status_reply, made.error_reply
        self._cjson, self._status = made.cjson, made.status_reply
        # Tables built and read in Lua, one crossing each, rather than element by element from Python.
        self._pack = self._helper("function(...) return {...} end")
        self._reply = self._helper(_READ_REPLY)
        self.on_first_write: Callable[[], None] | None = None  # called before a run's first write
        # A JSON text the caller has parsed already, and its value, which cjson.decode then reads again
        # instead of parsing the text twice (the value is read, never changed).
        self.decoded: tuple[str, Any] | None = None

    def _helper(self, source: str) -> Any:
        """A Lua function of this module's, compiled once per runtime (a Redis per schedule shares one)."""
        function = self._bodies.get(source)
        if function is None:
            function = self._bodies[source] = self.lua.eval(source)
        return function

    def _redis_call(self, command: Any, *args: Any) -> Any:
        # A ResponseError raised here stops the script where it stands, writes made so far kept, and
        # reaches the caller as itself: what redis-py raises for a script's runtime error.
        if type(command) is not str:
            raise ResponseError(_ARG_ERROR)
        # Checked and turned to text in one pass: strings as they are, Lua's numbers as Redis prints them.
        reply = self.keyspace.run(command, [x if type(x) is str else _script_arg(x) for x in args])
        return reply if type(reply) is str or type(reply) is int else self._to_lua(reply)

    def _redis_pcall(self, command: Any, *args: Any) -> Any:
        try:
            return self._redis_call(command, *args)
        except ResponseError as exc:
            return self.lua.table_from({"err": str(exc)})

    def _decode(self, text: str) -> Any:
        known = self.decoded
        value = known[1] if known is not None and known[0] == text else orjson.loads(text)
        # JSON without the word has no null to replace: most payloads, not walked then.
        return self.lua.table_from(_nulls(value, self._null) if "null" in text else value, recursive=True)

    def _to_lua(self, reply: Any) -> Any:
        if type(reply) is str or type(reply) is int:
            return reply
        if reply is None:
            return False
        if isinstance(reply, Status):
            return self._status(str(reply))
        if isinstance(reply, list):
            items = [x if type(x) is str else False if x is None else self._to_lua(x) for x in reply]
            # Lua's stack bounds how many values one call may pass.
            return self._pack(*items) if len(items) <= _PACKED else self.lua.table_from(items)
        return reply

    def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """One EVAL of `source`, synchronously: its reply, or the ResponseError Redis answers."""
        compiled = self._bodies.get(source)
        flags = shebang_flags(source) if compiled is None else compiled[0]
        if flags is not None and self.keyspace.over_maxmemory and not flags & {"allow-oom", "no-writes"}:
            # Its flags make EVAL a command that may grow memory: refused before it runs, as any such.
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
        if compiled is None:
            lua = "--" + source if flags is not None else source  # the shebang line is not Lua
            body = self.lua.eval(f"function(KEYS, ARGV, redis, cjson)\n{lua}\nend")
            compiled = self._bodies[source] = (flags, body)
        self.keyspace.begin(
            self.on_first_write, allow_oom=flags is not None, read_only=flags is not None and "no-writes" in flags
        )
        argv = [x if type(x) is str else _arg(x) for x in args]
        keys_t = self._pack(*keys) if len(keys) <= _PACKED else self.lua.table_from(list(keys))
        argv_t = self._pack(*argv) if len(argv) <= _PACKED else self.lua.table_from(argv)
        try:
            reply = compiled[1](keys_t, argv_t, self._redis, self._cjson)
        except LuaError as exc:
            raise ResponseError(str(exc).splitlines()[0]) from None
        finally:
            self.keyspace.end()
        return self._from_lua(reply)

    def _from_lua(self, value: Any) -> Any:
        """Redis's conversion of a script's reply, a table's fields and array read in Lua in one call."""
        if type(value) is str or value is None or value is False or lua_type(value) != "table":
            return _from_lua(value)
        err, ok, n, *items = self._reply(value)
        if err is not None:
            raise ResponseError(str(err))
        if ok is not None:
            return Status(ok)
        if len(items) < n:  # too many to return at once: read one by one
            items = [value[i] for i in range(1, n + 1)]
        return [x if type(x) is str or (type(x) is int and _MIN <= x < -_MIN) else self._from_lua(x) for x in items]

    def register_script(self, source: str) -> Callable[..., Any]:
        async def run(keys: list[str], args: list[Any]) -> Any:
            return self.run(source, keys, args)

        return run


def _from_lua(value: Any) -> Any:
    """Redis's conversion of a script's reply that is not a table: numbers to integers (truncated), false to
    nil, true to 1 (Scripts._from_lua reads tables: arrays up to the first nil, {ok = s}, {err = s})."""
    if value is None or value is False:
        return None
    if isinstance(value, bool):
        return 1
    if isinstance(value, float | int):
        # C's (long long) cast: truncated; out of range (or NaN) it is x86's "integer indefinite", -2^63.
        n = int(value) if value == value and abs(value) != float("inf") else _MIN
        return n if _MIN <= n < -_MIN else _MIN
    if isinstance(value, str | bytes):
        return value
    return None  # a function, userdata (cjson.null): Redis answers nil; tables are Scripts._from_lua's


_SHARED: list[tuple[LuaRuntime, dict[str, Any]]] = []


def _shared() -> tuple[LuaRuntime, dict[str, Any]]:
    if not _SHARED:
        _SHARED.append((_runtime(), {}))
    return _SHARED[0]


def _runtime() -> LuaRuntime:
    """Lua 5.1 with Redis 7's guard on globals: a script can neither set one (the globals are read-only)
    nor read one that is not there, so no run leaves anything behind for the next."""
    lua = LuaRuntime(unpack_returned_tuples=False)
    lua.execute(
        "setmetatable(_G, {"
        " __newindex = function() error('Attempt to modify a readonly table', 2) end,"
        ' __index = function(_, name) error("Script attempted to access nonexistent global variable \'"'
        ' .. tostring(name) .. "\'", 2) end})'
    )
    return lua


def _nulls(value: Any, null: Any) -> Any:
    """JSON's nulls as cjson's `null` (not nil, which would end an array)."""
    if value is None:
        return null
    if type(value) is list:
        if set(map(type, value)) <= _SCALARS:  # most of a payload: lists of members, walked in C
            return value
        return [_nulls(x, null) for x in value]
    if type(value) is dict:
        return {k: _nulls(v, null) for k, v in value.items()}
    return value


def _script_arg(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if type(value) is not float:
        raise ResponseError(_ARG_ERROR)
    return _text(value)


def _arg(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
