"""Comparing a real redis-server with the simulator's keyspace (tests/sim/keyspace.py): whole keyspaces
key by key (type, value, expiry), and a script's outcome on both (its reply, or its error's kind and
message without where each says it happened)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from redis.exceptions import ResponseError

from streams.local.redis_server import LocalRedis
from tests.sim.lua_redis import Keyspace, Scripts

TTL_TOLERANCE_MS = 3_000  # the two set their expiries a few milliseconds apart on the wall clock


class SimClient(Scripts):
    """What RedisStore calls, over the simulated keyspace."""

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    async def aclose(self) -> None:
        pass


def own_server(name: str) -> Callable[..., Iterator[LocalRedis]]:
    """A module's own throwaway redis-server (its flag tests set maxmemory, which must reach no other)."""

    @pytest.fixture(scope="module")
    def server(workdir: Path) -> Iterator[LocalRedis]:
        found = LocalRedis(workdir / name).start(keep_data=False)
        yield found
        found.stop()

    return server


@pytest.fixture
def real_client(server: LocalRedis) -> Iterator[redis_sync.Redis]:
    """A client of the module's server, on an empty keyspace."""
    client = redis_sync.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


def real_dump(client: redis_sync.Redis) -> dict[str, tuple[str, Any, int]]:
    out: dict[str, tuple[str, Any, int]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        read = {"string": client.get, "hash": client.hgetall, "set": client.smembers}[kind]  # type: ignore[index]
        out[str(key)] = (str(kind), read(key), int(client.pttl(key)))  # type: ignore[operator, arg-type]
    return out


def sim_dump(keyspace: Keyspace) -> dict[str, tuple[str, Any, int]]:
    keyspace.expire_all()
    kinds: dict[type, str] = {str: "string", dict: "hash", set: "set"}
    return {k: (kinds[type(v)], v, keyspace.call("PTTL", k)) for k, v in keyspace.data.items()}


def assert_same_keyspace(client: redis_sync.Redis, keyspace: Keyspace, where: object) -> None:
    got, want = real_dump(client), sim_dump(keyspace)
    assert set(got) == set(want), (where, sorted(set(got) ^ set(want))[:5])
    for key, (kind, value, ttl) in got.items():
        sim_kind, sim_value, sim_ttl = want[key]
        assert (kind, value) == (sim_kind, sim_value), (where, key)
        assert (ttl < 0) == (sim_ttl < 0) and abs(ttl - sim_ttl) <= TTL_TOLERANCE_MS, (where, key, ttl, sim_ttl)


def core(message: str) -> str:
    """An error's message without where Redis or lupa says it happened, which differ."""
    text = re.sub(r" script: .*$", "", message.strip())
    return re.sub(r"^(@?user_script|\[string \"<python>\"\]):\d+: ", "", text)


def outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "reply", run()
    except ResponseError as exc:
        return type(exc).__name__, core(str(exc))


def same_outcome(client: redis_sync.Redis, scripts: Scripts, source: str, keys: list[str], args: list[Any]) -> None:
    """EVAL on both: the same reply, or the same kind of error with the same message."""
    real_got = outcome(lambda: client.eval(source, len(keys), *keys, *args))
    sim_got = outcome(lambda: scripts.run(source, keys, args))
    assert real_got == sim_got, (source[:60], args)
