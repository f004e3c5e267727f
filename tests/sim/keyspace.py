"""A simulated Redis keyspace: the commands the project's Lua scripts call, with Redis 7's semantics.

Strings, hashes and sets (str, dict, set values), key expiry on the caller's clock, and the replies and
errors Redis gives: WRONGTYPE, integers parsed as Redis parses them (no '+', no leading zeros, 64 bits),
increments that would overflow refused, a hash or set whose last element goes deleted, EXPIRE of a
non-positive time deleting the key. Replies are as a script sees them (tests/sim/lua_redis.py converts
them): None for a nil bulk, `Status` for a status reply. `over_maxmemory` is the state in which Redis
refuses commands that may grow memory (maxmemory reached, noeviction). Every script run goes through
`begin`, so that the first write of a run can be seen (`on_first_write`), as Redis tracks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
# Commands that write, and of them those Redis refuses when over maxmemory (its `denyoom` flag).
WRITES = frozenset({"SET", "DEL", "HSET", "HDEL", "HINCRBY", "SADD", "EXPIRE", "PEXPIRE", "PERSIST"})
DENYOOM = frozenset({"SET", "HSET", "HINCRBY", "SADD"})
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,18}")
_MIN, _MAX = -(2**63), 2**63 - 1


class Status(str):
    """A status reply (`+OK`, TYPE's answer): a script sees it as the table {ok = text}."""


def redis_int(text: str, error: str = "value is not an integer or out of range") -> int:
    """`text` as Redis's string2ll reads it, or the error Redis answers."""
    n = _READ.get(text)
    if n is not None:
        return n
    if _INTEGER.fullmatch(text) is None:
        raise ResponseError(error)
    n = int(text)
    if not _MIN <= n <= _MAX:
        raise ResponseError(error)
    if len(_READ) < 50_000:
        _READ[text] = n
    return n


# Texts read as integers before, and their values: counters, times and TTLs are read again and again.
_READ: dict[str, int] = {}


class Keyspace:
    def __init__(self, clock_s: Callable[[], float]) -> None:
        self.clock_s = clock_s
        self.data: dict[str, Any] = {}
        self.expires_ms: dict[str, int] = {}
        self.over_maxmemory = False
        self.on_first_write: Callable[[], None] | None = None
        self._dirty = True  # outside a script run, nothing to watch
        self._allow_oom, self._read_only = True, False
        self._run_ms: int | None = None  # the instant of the script running now

    def now_ms(self) -> int:
        run_ms = self._run_ms
        return int(self.clock_s() * 1000) if run_ms is None else run_ms

    def begin(
        self, on_first_write: Callable[[], None] | None = None, allow_oom: bool = False, read_only: bool = False
    ) -> None:
        """A script run starts: it has written nothing yet; its flags say what Redis lets it do."""
        self._dirty, self.on_first_write = False, on_first_write
        self._allow_oom, self._read_only = allow_oom, read_only
        # A script runs at one instant, as Redis 7 has it (keys expire against the time the script began):
        # the clock is read once per run, not once per key.
        self._run_ms = int(self.clock_s() * 1000)

    def end(self) -> None:
        """The run is over: later calls come from outside a script."""
        self._dirty, self.on_first_write = True, None
        self._allow_oom, self._read_only = True, False
        self._run_ms = None

    def expire_all(self) -> None:
        """Drop every key whose time has come (Redis's active expiry), so `data` holds only live keys."""
        for key in list(self.expires_ms):
            self._live(key)

    def _live(self, key: str) -> Any:
        expires_ms = self.expires_ms.get(key)
        if expires_ms is not None and expires_ms <= (self._run_ms or self.now_ms()):
            self._drop(key)
        return self.data.get(key)

    def _drop(self, key: str) -> None:
        self.data.pop(key, None)
        self.expires_ms.pop(key, None)

    def _typed(self, key: str, kind: type) -> Any:
        expires_ms = self.expires_ms.get(key)  # _live's steps, inlined: most commands come here
        if expires_ms is not None and expires_ms <= (self._run_ms or self.now_ms()):
            self._drop(key)
        found = self.data.get(key)
        if found is not None and not isinstance(found, kind):
            raise ResponseError(WRONGTYPE)
        return found

    def call(self, command: str, *args: Any) -> Any:
        return self.run(command, [x if type(x) is str else _text(x) for x in args])

    def run(self, command: str, a: Sequence[str]) -> Any:
        """`call` with its arguments already as text."""
        found = _BY_NAME.get(command)
        if found is None:
            name = command.upper()
            if name not in _COMMANDS:
                raise ResponseError(f"the simulated keyspace does not implement {name}")
            found = _BY_NAME[command] = (*_COMMANDS[name], name in WRITES, name in DENYOOM)
        handler, arity, write, denyoom = found
        if (arity > 0 and len(a) + 1 != arity) or len(a) + 1 < -arity:
            raise ResponseError("Wrong number of args calling Redis command from script")
        if not write:
            return handler(self, a)
        if self._read_only:
            raise ResponseError("Write commands are not allowed from read-only scripts.")
        if not self._dirty:
            if self.over_maxmemory and not self._allow_oom and denyoom:
                # Redis refuses a script's first write when over maxmemory; a later one it lets through.
                raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
            self._dirty = True
            if self.on_first_write is not None:
                self.on_first_write()
        return handler(self, a)

    # What the Python client reads directly ----------------------------------------------------------
    def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return list(self.call("HMGET", key, *fields))


def _time(ks: Keyspace, a: Sequence[str]) -> list[str]:
    now_us = int(ks.clock_s() * 1_000_000)
    return [str(now_us // 1_000_000), str(now_us % 1_000_000)]


_KINDS: dict[Any, Status] = {str: Status("string"), dict: Status("hash"), set: Status("set")}
_NONE, _OK = Status("none"), Status("OK")


def _type(ks: Keyspace, a: Sequence[str]) -> Status:
    found = ks._live(a[0])
    if found is None:
        return _NONE
    kind = _KINDS.get(type(found))
    return kind if kind is not None else next(n for t, n in _KINDS.items() if isinstance(found, t))


def _get(ks: Keyspace, a: Sequence[str]) -> str | None:
    found: str | None = ks._typed(a[0], str)
    return found


def _set(ks: Keyspace, a: Sequence[str]) -> Status:
    ttl_ms = None
    options = [x.upper() for x in a[2:]]
    if options:  # the one option the scripts use: EX or PX and its time
        if len(options) != 2 or options[0] not in ("EX", "PX"):
            raise ResponseError("syntax error")
        n = redis_int(a[3])
        if n <= 0:
            raise ResponseError("invalid expire time in 'set' command")
        ttl_ms = n * (1000 if options[0] == "EX" else 1)
    ks.data[a[0]] = a[1]
    ks.expires_ms.pop(a[0], None)
    if ttl_ms is not None:
        ks.expires_ms[a[0]] = ks.now_ms() + ttl_ms
    return _OK


def _del(ks: Keyspace, a: Sequence[str]) -> int:
    gone = [k for k in dict.fromkeys(a) if ks._live(k) is not None]
    for k in gone:
        ks._drop(k)
    return len(gone)


def _expire(ks: Keyspace, a: Sequence[str], unit_ms: int) -> int:
    flags = [x.upper() for x in a[2:]] if len(a) > 2 else []
    for flag, given in zip(flags, a[2:], strict=True):
        if flag not in ("NX", "XX", "GT", "LT"):
            raise ResponseError(f"Unsupported option {given}")
    if len(flags) > 1:
        raise ResponseError("NX and XX, GT or LT options at the same time are not compatible")
    now_ms = ks.now_ms()  # a command runs at one instant
    when = now_ms + redis_int(a[1]) * unit_ms
    if ks._live(a[0]) is None:
        return 0
    current = ks.expires_ms.get(a[0])
    if flags and _REFUSED[flags[0]](current, when):
        return 0
    if when <= now_ms:  # a time already past deletes the key, as Redis does
        ks._drop(a[0])
        return 1
    ks.expires_ms[a[0]] = when
    return 1


_REFUSED: dict[str, Callable[[int | None, int], bool]] = {
    "NX": lambda current, when: current is not None,
    "XX": lambda current, when: current is None,
    "GT": lambda current, when: current is None or when <= current,
    "LT": lambda current, when: current is not None and when >= current,
}


def _pttl(ks: Keyspace, a: Sequence[str]) -> int:
    if ks._live(a[0]) is None:
        return -2
    return ks.expires_ms[a[0]] - ks.now_ms() if a[0] in ks.expires_ms else -1


def _persist(ks: Keyspace, a: Sequence[str]) -> int:
    if ks._live(a[0]) is None:
        return 0
    return 1 if ks.expires_ms.pop(a[0], None) is not None else 0


def _hset(ks: Keyspace, a: Sequence[str]) -> int:
    if len(a) % 2 == 0:  # a key, then field and value pairs
        raise ResponseError("wrong number of arguments for 'hset' command")
    h = ks._typed(a[0], dict)
    if h is None:
        h = ks.data[a[0]] = {}
    if len(a) == 3:  # one field, as most calls set
        added = 0 if a[1] in h else 1
        h[a[1]] = a[2]
        return added
    fields = a[1::2]
    added = len(set(fields).difference(h))
    h.update(zip(fields, a[2::2], strict=True))
    return added


def _hincrby(ks: Keyspace, a: Sequence[str]) -> int:
    by = redis_int(a[2])
    h = ks._typed(a[0], dict)
    old = redis_int(h[a[1]], "hash value is not an integer") if h is not None and a[1] in h else 0
    if not _MIN <= old + by <= _MAX:
        raise ResponseError("increment or decrement would overflow")
    if h is None:
        h = ks.data[a[0]] = {}
    h[a[1]] = str(old + by)
    return old + by


def _hget(ks: Keyspace, a: Sequence[str]) -> str | None:
    h = ks._typed(a[0], dict)
    return None if h is None else h.get(a[1])


def _hmget(ks: Keyspace, a: Sequence[str]) -> list[str | None]:
    h = ks._typed(a[0], dict) or {}
    return [h.get(f) for f in a[1:]]


def _hgetall(ks: Keyspace, a: Sequence[str]) -> list[str]:
    h = ks._typed(a[0], dict) or {}
    return [x for pair in h.items() for x in pair]


def _hdel(ks: Keyspace, a: Sequence[str]) -> int:
    h = ks._typed(a[0], dict)
    if h is None:
        return 0
    gone = [f for f in dict.fromkeys(a[1:]) if h.pop(f, None) is not None]
    if not h:
        ks._drop(a[0])  # Redis deletes a hash whose last field goes
    return len(gone)


def _sadd(ks: Keyspace, a: Sequence[str]) -> int:
    s = ks._typed(a[0], set)
    if s is None:
        s = ks.data[a[0]] = set()
    before = len(s)
    s.update(a[1:])
    return len(s) - before


def _smismember(ks: Keyspace, a: Sequence[str]) -> list[int]:
    s = ks._typed(a[0], set) or set()
    return [1 if m in s else 0 for m in a[1:]]


def _scard(ks: Keyspace, a: Sequence[str]) -> int:
    return len(ks._typed(a[0], set) or ())


# Each command and its arity as Redis declares it (counting the name; negative: at least that many).
_COMMANDS: dict[str, tuple[Callable[[Keyspace, Sequence[str]], Any], int]] = {
    "TIME": (_time, 1),
    "TYPE": (_type, 2),
    "GET": (_get, 2),
    "SET": (_set, -3),
    "DEL": (_del, -2),
    "EXPIRE": (lambda ks, a: _expire(ks, a, 1000), -3),
    "PEXPIRE": (lambda ks, a: _expire(ks, a, 1), -3),
    "PTTL": (_pttl, 2),
    "PERSIST": (_persist, 2),
    "HSET": (_hset, -4),
    "HINCRBY": (_hincrby, 4),
    "HGET": (_hget, 3),
    "HMGET": (_hmget, -3),
    "HGETALL": (_hgetall, 2),
    "HDEL": (_hdel, -3),
    "SADD": (_sadd, -3),
    "SMISMEMBER": (_smismember, -3),
    "SCARD": (_scard, 2),
}


# Each command name as a script spells it (any case): its handler, arity, whether it writes and whether
# Redis refuses it over maxmemory; filled as scripts call them.
_BY_NAME: dict[str, tuple[Callable[[Keyspace, Sequence[str]], Any], int, bool, bool]] = {}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
