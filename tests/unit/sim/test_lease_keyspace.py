"""The exporter simulator's Lua keyspace (tests/sim/lease_keyspace.py) answers the lease scripts as the
Python keyspace (tests/sim/keyspace.py, held to a real redis-server) does: the same replies and the same
keys, field order and expiries, over random rounds of several replicas, releases, legacy leases and time
that lets keys expire; what it does not model stops the run instead of answering."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tables.lease import LeaseStore, legacy_lease_key
from tests.sim.keyspace import Keyspace
from tests.sim.lease_keyspace import LeaseKeyspace, LeaseScripts
from tests.sim.lua_redis import Scripts

START_S = 1_790_000_000.0


class _PythonClient(Scripts):
    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)


def _state(keyspace: Keyspace | LeaseKeyspace) -> tuple[list[Any], dict[str, int]]:
    data, expires = keyspace.dump() if isinstance(keyspace, LeaseKeyspace) else (keyspace.data, keyspace.expires_ms)
    # Hash fields in order: HGETALL answers them so.
    return sorted((k, list(v.items()) if isinstance(v, dict) else v) for k, v in data.items()), dict(expires)


async def _rounds(seed: int) -> int:
    rng = random.Random(seed)
    now = [START_S]
    python_ks, lua_ks = Keyspace(lambda: now[0]), LeaseKeyspace(lambda: now[0])
    python, lua = LeaseStore(_PythonClient(python_ks, shared=True), "sim"), LeaseStore(LeaseScripts(lua_ks), "sim")
    checked = 0
    for _ in range(300):
        roll, rid = rng.random(), f"r{rng.randrange(4)}"
        if roll < 0.6:
            args = (rid, rng.choice([3000, 10000]), rng.choice([0, 2100, 67000]), 500, rng.choice([0, 1000, 60000]))
            assert await python.hold(*args) == await lua.hold(*args)
        elif roll < 0.75:
            visible_ms = rng.choice([-5, 0, 1500, 130_000])
            assert await python.release(rid, visible_ms) == await lua.release(rid, visible_ms)
        elif roll < 0.85:
            assert await python.holder() == await lua.holder()
        elif roll < 0.9:
            # A build of an older layout holding its own key: the round writes its record for it.
            key = rng.choice([legacy_lease_key("sim"), "{sim}:v2:leader", "{sim}:leader"])
            ms = str(rng.choice([1, 4000]))
            python_ks.call("SET", key, rid, "PX", ms)
            lua_ks.begin()
            lua_ks.lua.call("SET", key, rid, "PX", ms)
        else:
            now[0] += rng.choice([0.001, 0.5, 3.3, 11.0, 70.0, 200.0])
        assert _state(python_ks) == _state(lua_ks)
        checked += 1
    return checked


@pytest.mark.parametrize("seed", range(8))
def test_lease_rounds_leave_the_same_keys_and_replies(seed: int) -> None:
    assert asyncio.run(_rounds(seed)) == 300


def test_a_round_reaches_every_branch_a_schedule_needs() -> None:
    now = [START_S]
    ks = LeaseKeyspace(lambda: now[0])
    store = LeaseStore(LeaseScripts(ks), "sim")

    async def run() -> None:
        first = await store.hold("r0", 10_000, 2100, 500, 1000)
        assert (first.lease, first.wait_s, first.fresh) == (1, 0.0, True)
        assert await store.holder() == "r0"
        assert (await store.hold("r1", 10_000, 2100, 500, 0)).lease == 0  # held by r0
        now[0] += 11.0  # r0's term lapsed: r1 waits out its grace
        taken = await store.hold("r1", 10_000, 2100, 500, 0)
        assert (taken.lease, taken.wait_s, taken.fleet_interval_s) == (1, 1.1, 1.0)
        assert await store.release("r1", 0) and await store.holder() is None

    asyncio.run(run())
    data, expires = ks.dump()
    assert data["{sim}:exporter"]["state"] == "released" and "{sim}:exporter" in expires


@pytest.mark.parametrize(
    "source",
    [
        "return redis.call('INCR', KEYS[1])",  # a command the lease scripts never send
        "redis.call('SET', KEYS[1], 'x'); return redis.call('HGET', KEYS[1], 'f')",  # a wrong type
        "return redis.call('PEXPIRE', KEYS[1], 0.5)",  # a number that is not an integer
        "return redis.pcall('GET', KEYS[1])",
    ],
)
def test_what_it_does_not_model_stops_the_run(source: str) -> None:
    scripts = LeaseScripts(LeaseKeyspace(lambda: START_S))
    with pytest.raises(NotImplementedError, match="does not model"):
        scripts.run(source, ["k"], [])
