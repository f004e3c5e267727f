"""The exporter's read path over the simulated keyspace: what a scrape at the end of a schedule exports.

The sidecar's `exporting_snapshot` reads the tables with `tables.table_reads.consistent_tables` (a pipeline of
SMEMBERS, then the read-only script of tables/reads.py) and decodes them with `tables.snapshot.decode`.
`ReadClient` gives those two calls what they need from a redis-py client, over the simulator's keyspace,
outside the schedule: the checker reads after everything has been written, so no read is a point the
scheduler decides. The read script is answered as the MULTI/EXEC pipeline of its commands would be, which
tests/integration/test_scrape_reads.py holds it to on a real redis-server; run in Lua here it costs the
simulator about twice as much per scrape, so it runs there only in tests/unit/sim/test_oracle.py, which
holds the two answers equal on simulated tables (`ReadClient(lua=True)`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from redis.exceptions import ResponseError

from tables.keys import Keys
from tables.reads import READ_LUA
from tables.snapshot import Snapshot, decode
from tables.table_reads import consistent_tables
from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts

_READS = {"G": "HGETALL", "S": "SCARD"}  # the read script's ops that name one keyspace command (L: HLEN)


class _ReadCommands:
    """The keyspace as a script sees it, plus HLEN (the read script's, which the writes never call)."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    @property
    def over_maxmemory(self) -> bool:
        return self.keyspace.over_maxmemory

    def begin(self, on_first_write: Callable[[], None] | None = None, **flags: bool) -> None:
        self.keyspace.begin(on_first_write, **flags)

    def end(self) -> None:
        self.keyspace.end()

    def run(self, command: str, a: Sequence[str]) -> Any:  # the Lua bridge's entry, arguments already text
        return self.call(command, *a)

    def call(self, command: str, *args: Any) -> Any:
        if command.upper() != "HLEN":
            return self.keyspace.call(command, *args)
        if len(args) != 1:
            raise ResponseError("Wrong number of args calling Redis command from script")
        return len(self.keyspace.call("HGETALL", *args)) // 2  # WRONGTYPE and expiry as HGETALL has them


class _Pipeline:
    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self.queued: list[str] = []

    def smembers(self, key: str) -> None:
        self.queued.append(key)

    async def execute(self) -> list[set[str]]:
        found = []
        for key in self.queued:
            kind = self.keyspace.call("TYPE", key)  # an expired key is dropped here, as Redis does
            if kind not in ("none", "set"):
                raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
            found.append(set(self.keyspace.data[key]) if kind == "set" else set())
        return found


class ReadClient:
    """The part of redis-py's asyncio client the scrape's read uses."""

    def __init__(self, keyspace: Keyspace, lua: bool = False) -> None:
        self.keyspace = keyspace
        self.commands = _ReadCommands(keyspace)
        self.scripts = Scripts(self.commands, shared=True) if lua else None  # type: ignore[arg-type]

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self.keyspace)

    def register_script(self, source: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if source != READ_LUA:
            raise ValueError("the simulated scrape answers tables/reads.py's script only")
        return self.scripts.register_script(source) if self.scripts else self._reads

    async def _reads(self, keys: list[str], args: list[Any]) -> list[Any]:
        """READ_LUA's replies: per key, the command its op names (G, S, L, or M and a field list's number)."""
        lists, names = orjson.loads(args[1]), orjson.loads(args[2])
        assert keys == names[:1], "the first key read is the one declared"
        out: list[Any] = []
        for key, op in zip(names, str(args[0]).split(), strict=True):
            command = _READS.get(op)
            if command is not None and type(key) is str:
                out.append(self.keyspace.run(command, (key,)))  # Keyspace.call's steps for one key as text
            elif command is not None or op == "L":
                out.append(self.commands.call(command or "HLEN", key))
            elif op.startswith("M"):
                fields = lists[int(op[1:]) - 1]
                out.append(self.commands.call("HMGET", key, *fields) if fields else [])
            else:
                raise ResponseError(f"unknown read {op}")
        return out


def scrape(keyspace: Keyspace, keys: Keys, today: str, raw_topic: str, lua: bool = False) -> Snapshot:
    """The Snapshot the exporter would serve on local day `today`, read through the product's read path."""
    raw = _now(consistent_tables(ReadClient(keyspace, lua), keys, today))  # type: ignore[arg-type]
    return decode(raw, raw_topic)


def _now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (every read here answers at once) to its result, synchronously:
    the checker runs inside the simulation's loop, between its steps."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the simulated scrape waited for something: its reads must answer at once")
