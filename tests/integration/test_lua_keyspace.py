"""The simulator's keyspace (tests/sim/keyspace.py, scripts run in Lua by tests/sim/lua_redis.py) held to a
real redis-server command by command: a script keeps what it wrote before an error (Redis never rolls
one back), integers are parsed and overflow as Redis has them, replies convert both ways as Redis
converts them, and the shebang's flags refuse as Redis 7 does over maxmemory."""

from __future__ import annotations

import time

import orjson
import pytest
import redis as redis_sync

from tests.integration.keyspace_diff import assert_same_keyspace, own_server, real_client, same_outcome
from tests.sim.lua_redis import Keyspace, Scripts

pytestmark = pytest.mark.integration


server = own_server("redis-lua-keyspace")
real = real_client  # the fixture, under the name the tests ask for


PARTIAL = """
redis.call('HSET', KEYS[1], 'before', '1')
redis.call('SADD', KEYS[2], 'm')
redis.call('EXPIRE', KEYS[2], 100)
local r = redis.call(ARGV[1], KEYS[ARGV[2] + 0], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'after', '1')
return r
"""
RUNTIME = """
redis.call('HSET', KEYS[1], 'before', '1')
local missing = redis.call('HGET', KEYS[1], 'missing')
if tonumber(missing) < 3 then redis.call('HSET', KEYS[1], 'after', '1') end
"""
REPLIES = """
return {3.7, -2.5, true, false, 'x', redis.call('TYPE', KEYS[1]), redis.call('HGET', KEYS[1], 'no'),
  redis.call('SMISMEMBER', KEYS[2], 'm', 'n'), cjson.decode(ARGV[1]).a[2], redis.call('HINCRBY', KEYS[1], 'n', ARGV[2])}
"""
CASES = [
    ("HINCRBY", "1", "bad", "1"),  # the planted value is not an integer
    ("HINCRBY", "1", "big", "1"),  # 2^63 - 1: one more overflows
    ("HINCRBY", "1", "big", "-1"),
    ("HINCRBY", "1", "n", "1.5"),  # an increment that is not an integer
    ("HINCRBY", "1", "n", "+1"),
    ("HINCRBY", "1", "zero", "1"),  # a stored '007'
    ("HINCRBY", "2", "n", "1"),  # a set: WRONGTYPE
    ("HSET", "2", "f", "v"),
    ("SADD", "1", "m", "n"),
    ("SMISMEMBER", "1", "m", "n"),
    ("HGET", "2", "f", "x"),
    ("EXPIRE", "1", "-5", "GT"),  # refused: the hash has no expiry, which is longer than any
    ("EXPIRE", "1", "-5", "LT"),  # a past time: the key goes
    ("EXPIRE", "2", "50", "LT"),
    ("EXPIRE", "2", "500", "XX"),
    ("EXPIRE", "2", "5", "NX"),
    ("EXPIRE", "1", "ten", "NX"),
    ("EXPIRE", "1", "10", "x"),
    ("SET", "1", "v", "EX"),  # a syntax error after two writes
    ("TYPE", "2", "x", "y"),
]


def _seed_keys(client: redis_sync.Redis, keyspace: Keyspace) -> None:
    for command in (
        ("HSET", "h", "bad", "x", "big", str(2**63 - 1), "zero", "007"),
        ("SADD", "s", "m"),
    ):
        client.execute_command(*command)
        keyspace.call(*command)


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_a_script_keeps_what_it_wrote_before_an_error_as_redis_does(
    real: redis_sync.Redis, case: tuple[str, ...]
) -> None:
    scripts = Scripts(Keyspace(time.time))
    _seed_keys(real, scripts.keyspace)
    same_outcome(real, scripts, PARTIAL, ["h", "s"], list(case))
    assert_same_keyspace(real, scripts.keyspace, case)


def test_a_lua_runtime_error_after_a_write_keeps_the_write_and_replies_convert_as_redis_does(
    real: redis_sync.Redis,
) -> None:
    scripts = Scripts(Keyspace(time.time))
    _seed_keys(real, scripts.keyspace)
    same_outcome(real, scripts, RUNTIME, ["h"], [])
    assert real.hget("h", "before") == "1" and real.hget("h", "after") is None
    same_outcome(real, scripts, REPLIES, ["h", "s"], [orjson.dumps({"a": [1, None, 3]}), "41"])
    assert_same_keyspace(real, scripts.keyspace, "replies")


@pytest.mark.parametrize(
    "source", ["x = 1\nreturn 1", "return undefined_name", "local t = {}\nt.x = 1\nreturn redis.call('TYPE', KEYS[1])"]
)
def test_globals_are_guarded_as_redis_guards_them(real: redis_sync.Redis, source: str) -> None:
    scripts = Scripts(Keyspace(time.time))
    same_outcome(real, scripts, source, ["k"], [])


FLAGGED = [
    ("#!lua\nreturn redis.call('SET', KEYS[1], 'v')", "shebang, no flags: refused whole"),
    ("#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], 'v')", "allow-oom: runs"),
    ("#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", "no-writes: runs"),
    ("#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'v')", "no-writes: its write refused"),
    ("redis.call('GET', KEYS[1])\nreturn redis.call('SET', KEYS[1], 'v')", "no shebang: the first write refused"),
    ("redis.call('DEL', KEYS[1])\nreturn redis.call('SET', KEYS[1], 'v')", "no shebang: a write came first"),
    ("#!lua flags=bogus\nreturn 1", "an unknown flag"),
    ("#!lua name=x\nreturn 1", "an unknown option"),
]


@pytest.mark.parametrize("over_maxmemory", [False, True])
@pytest.mark.parametrize(("source", "what"), FLAGGED, ids=[w for _, w in FLAGGED])
def test_the_shebang_flags_refuse_as_redis_does(
    real: redis_sync.Redis, source: str, what: str, over_maxmemory: bool
) -> None:
    scripts = Scripts(Keyspace(time.time))
    real.set("k", "old")
    scripts.keyspace.call("SET", "k", "old")
    scripts.keyspace.over_maxmemory = over_maxmemory
    real.config_set("maxmemory", "1" if over_maxmemory else "0")
    try:
        same_outcome(real, scripts, source, ["k"], [])
    finally:
        real.config_set("maxmemory", "0")
    assert_same_keyspace(real, scripts.keyspace, what)
