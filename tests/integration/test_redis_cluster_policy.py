"""The eviction-policy check on a real Redis Cluster when a primary stops answering: a frozen primary that
does not hold the state's slot is named and left out within its per-node timeout (the state stays usable,
so the replica stays ready); the state's own primary frozen makes the check fail, as unknown is not safe."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams import clients
from streams.local.redis_topologies import LocalCluster
from streams.settings import Settings
from tables.eviction import NODE_TIMEOUT_S, eviction_policy, is_safe
from tables.keys import state_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(workdir: Path) -> Iterator[LocalCluster]:
    setup = LocalCluster(workdir / "policy-cluster").start()
    yield setup
    setup.stop()


async def _timed(client: object, key: str) -> tuple[str, float]:
    started = time.monotonic()
    policy = await eviction_policy(client, key)
    return policy, time.monotonic() - started


def test_a_frozen_primary_without_the_state_is_named_and_the_states_own_is_an_error(cluster: LocalCluster) -> None:
    key = f"{state_prefix('policy-app')}:offsets"
    home = cluster.primary_of(key)
    other = next(n for n in cluster.primaries() if n.port != home.port)
    client = clients.redis_client(_settings(cluster.url))

    async def run() -> None:
        assert await eviction_policy(client, key) == "noeviction"  # the slot map learnt while all answer
        os.kill(other.server.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            policy, took = await _timed(client, key)
        finally:
            os.kill(other.server.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        assert policy == f"noeviction (not answering: 127.0.0.1:{other.port})" and is_safe(policy)
        assert took < NODE_TIMEOUT_S + 1.5, took
        assert (await _timed(client, key))[0] == "noeviction"  # answers again once thawed
        os.kill(home.server.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            with pytest.raises((TimeoutError, RedisTimeoutError)):
                await eviction_policy(client, key)
        finally:
            os.kill(home.server.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        await client.aclose()

    asyncio.run(run())


def _settings(url: str) -> Settings:
    os.environ["REDIS_URL"] = url
    try:
        return Settings.from_env()
    finally:
        del os.environ["REDIS_URL"]
