"""The exporter lease's scripts on a real redis-server, beside the simulated keyspace the simulator and
the unit tests run them on: the same generated operations give the same replies and the same record."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio as aioredis

from streams.local.redis_server import LocalRedis
from tables.lease import LeaseStore, lease_key, legacy_lease_key, members_key
from tests.sim.lua_redis import Keyspace, Scripts

pytestmark = pytest.mark.integration
TTL_MS, GRACE_MS, POLL_MS = 300, 200, 50
TOLERANCE_MS = 60  # the two run a few milliseconds apart on the wall clock
TIMES = {"until_ms", "start_ms", "visible_ms", "freed_ms"}


class _Sim(Scripts):
    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)


def _hash(keyspace: Keyspace, key: str) -> dict[str, str]:
    flat = keyspace.call("HGETALL", key)
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _close(a: object, b: object, field: str) -> bool:
    if field in TIMES or field == "wait":
        return abs(float(a) - float(b)) <= TOLERANCE_MS / (1000 if field == "wait" else 1)  # type: ignore[arg-type]
    return a == b


@pytest.mark.parametrize("seed", range(3))
async def test_the_simulated_keyspace_answers_the_lease_scripts_as_redis_does(
    redis_server: LocalRedis, seed: int
) -> None:
    rng = random.Random(seed)
    app = f"lease-diff-{seed}-{time.time_ns()}"
    real_client = aioredis.from_url(redis_server.url, decode_responses=True)
    keyspace = Keyspace(time.time)
    stores = (LeaseStore(real_client, app), LeaseStore(_Sim(keyspace), app))
    try:
        for step in range(60):
            rid, roll = rng.choice("abc"), rng.random()
            if roll < 0.55:
                interval = rng.choice([0, 1_000, 15_000])
                got = [await s.hold(rid, TTL_MS, GRACE_MS, POLL_MS, interval) for s in stores]
                real, sim = got
                same = (real.lease, real.inherited, real.fleet_interval_s) == (
                    sim.lease,
                    sim.inherited,
                    sim.fleet_interval_s,
                )
                assert same, (step, got)
                assert _close(real.wait_s, sim.wait_s, "wait"), (step, got)
            elif roll < 0.75:
                visible = rng.choice([0, 100, 400])
                assert [await s.release(rid, visible) for s in stores] in ([True, True], [False, False]), step
            else:
                await asyncio.sleep(rng.choice([0.05, 0.2, 0.35]))
            real_record: dict[str, str] = await real_client.hgetall(lease_key(app))  # type: ignore[assignment]
            sim_record = _hash(keyspace, lease_key(app))
            assert set(real_record) == set(sim_record), (step, real_record, sim_record)
            assert all(_close(real_record[f], sim_record[f], f) for f in real_record), (step, real_record, sim_record)
            assert (await real_client.get(legacy_lease_key(app))) == keyspace.call("GET", legacy_lease_key(app)), step
            real_members = set(await real_client.hkeys(members_key(app)))
            sim_members = set(_hash(keyspace, members_key(app)))
            assert real_members == sim_members, (step, real_members, sim_members)
    finally:
        await real_client.aclose()
