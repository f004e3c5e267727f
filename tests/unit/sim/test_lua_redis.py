"""The simulator's Redis without a redis-server: scripts keep what they wrote before an error, the shebang's
flags refuse as Redis 7 does over maxmemory, the checker's hook sees a run's first write, replies convert
as Redis converts them, and snapshots keep expiries. (The same behaviour on a real Redis, command by
command: tests/integration/test_lua_keyspace.py.)"""

from __future__ import annotations

import orjson
import pytest
from redis.exceptions import OutOfMemoryError, ResponseError

from tables.delta import Delta
from tables.script import APPLY_LUA
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts

NOW_S = 1_790_000_000.0


def scripts() -> Scripts:
    return Scripts(Keyspace(lambda: NOW_S))


def test_a_script_that_fails_keeps_what_it_wrote_before() -> None:
    s = scripts()
    s.keyspace.call("HSET", "h", "n", "x")
    source = (
        "redis.call('SADD', KEYS[2], 'm')\nredis.call('HINCRBY', KEYS[1], 'n', 1)\nredis.call('SADD', KEYS[2], 'z')"
    )
    with pytest.raises(ResponseError, match="hash value is not an integer"):
        s.run(source, ["h", "s"], [])
    assert s.keyspace.data == {"h": {"n": "x"}, "s": {"m"}}


def test_a_lua_error_after_a_write_is_a_response_error_and_keeps_the_write() -> None:
    s = scripts()
    with pytest.raises(ResponseError, match="attempt to compare nil with number"):
        s.run(
            "redis.call('SET', KEYS[1], 'v')\nif tonumber(redis.call('GET', 'none')) < 1 then return 1 end", ["k"], []
        )
    assert s.keyspace.data == {"k": "v"}


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("#!lua\nreturn redis.call('SET', KEYS[1], 'v')", True),  # refused whole, before it runs
        ("#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], 'v')", False),
        ("redis.call('GET', KEYS[1])\nreturn redis.call('SET', KEYS[1], 'v')", True),  # at its first write
        ("redis.call('DEL', KEYS[1])\nreturn redis.call('SET', KEYS[1], 'v')", False),  # a write came first
    ],
)
def test_over_maxmemory_a_script_is_refused_as_its_flags_say(source: str, refused: bool) -> None:
    s = scripts()
    s.keyspace.call("SET", "k", "old")
    s.keyspace.over_maxmemory = True
    if refused:
        with pytest.raises(OutOfMemoryError):
            s.run(source, ["k"], [])
        assert s.keyspace.data == {"k": "old"}
    else:
        assert s.run(source, ["k"], []) == "OK"
        assert s.keyspace.data == {"k": "v"}


def test_a_no_writes_script_cannot_write() -> None:
    s = scripts()
    with pytest.raises(ResponseError, match="not allowed from read-only scripts"):
        s.run("#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'v')", ["k"], [])
    with pytest.raises(ResponseError, match="Unexpected flag in script shebang: bogus"):
        s.run("#!lua flags=bogus\nreturn 1", [], [])


def test_the_first_write_hook_runs_once_and_not_for_a_batch_refused_whole() -> None:
    s, seen = scripts(), []
    s.on_first_write = lambda: seen.append(dict(s.keyspace.data))
    store = RedisStore(s, "app", days_kept=2)  # type: ignore[arg-type]
    delta = Delta()
    delta.processed["raw"] += 3
    payload = store.build_payload(delta, [OffsetMove("raw", 0, None, 3)])
    assert s.run(APPLY_LUA, [store.keys.offsets], [orjson.dumps(payload)]) == [1, ""]
    assert seen == [{}], "called once, before anything was written"
    assert s.run(APPLY_LUA, [store.keys.offsets], [orjson.dumps(payload)]) == [0, "raw:0"]  # the offset moved
    assert len(seen) == 1
    assert s.keyspace.call("HGET", store.keys.offsets, "raw:0") == "3"


def test_replies_convert_as_redis_converts_them() -> None:
    s = scripts()
    s.keyspace.call("HSET", "h", "big", str(2**63 - 2))
    source = (
        "return {3.7, -2.5, true, false, 'x', redis.call('TYPE', KEYS[1]), cjson.decode(ARGV[1]).a[2],"
        " redis.call('HINCRBY', KEYS[1], 'big', 1), nil, 'after nil'}"
    )
    # 2^63 - 1 as a Lua number is 2^63, which C's cast turns into -2^63, as on Redis.
    assert s.run(source, ["h"], [orjson.dumps({"a": [1, None]})]) == [3, -2, 1, None, "x", "hash", None, -(2**63)]


def test_expire_of_a_past_time_deletes_and_expired_keys_go() -> None:
    now = [NOW_S]
    ks = Keyspace(lambda: now[0])
    ks.call("SET", "a", "1", "EX", "10")
    ks.call("HSET", "h", "f", "1")
    assert ks.call("EXPIRE", "h", "0") == 1 and "h" not in ks.data
    now[0] += 10
    ks.expire_all()
    assert ks.data == {}


def test_many_keys_arguments_and_reply_values_cross_whole() -> None:
    # More values than one Lua call passes at once (tests/sim/lua_redis.py packs the smaller ones).
    s = scripts()
    fields = [f"f{i}" for i in range(250)]
    s.keyspace.call("HSET", "h", *[x for i, f in enumerate(fields) for x in (f, str(i))])
    source = (
        "local got = redis.call('HMGET', KEYS[1], unpack(ARGV))\n"
        "local out = {#KEYS, #ARGV, KEYS[300], ARGV[250], #got, got[1], got[250], got[251] == false}\n"
        "for i = 1, 250 do out[#out + 1] = got[i] end\n"
        "return out"
    )
    keys = ["h"] + [f"k{i}" for i in range(2, 301)]
    reply = s.run(source, keys, [*fields, "missing"])
    assert reply[:8] == [300, 251, "k300", "f249", 251, "0", "249", 1]
    assert reply[8:] == [str(i) for i in range(250)]
