"""The sidecar's wait on the key-layout check (tables/layout.py) and its setting, over the real scripts on the
simulated keyspace (tests/unit/tables/layout_redis.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams import sidecar as sidecar_module
from streams.env_reader import SettingsError
from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.keys import LAYOUT_VERSION
from tables.layout import (
    marker_key,
    members_key,
)
from tables.lease import lease_key
from tests.sim.lua_redis import Keyspace
from tests.unit.tables.layout_redis import LayoutRedis, layout_redis, stored_offsets


async def test_the_lease_loop_waits_for_the_layout_and_starts_once_the_old_one_is_gone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sidecar_module, "LAYOUT_RECHECK_S", 0.05)
    redis = layout_redis()
    stored_offsets(redis, "{ecomind-streams}:v2:offsets")
    sidecar = Sidecar(Settings(), 6066, redis=redis)  # type: ignore[arg-type]
    rounds = asyncio.create_task(sidecar._run_lease())
    tap = asyncio.create_task(sidecar._run_tap())
    st = sidecar.status
    try:
        await asyncio.sleep(0.2)
        assert st.layout_refusal is not None and "older key layout (2" in st.layout_refusal
        assert "purge-layout --layout 2" in st.layout_refusal
        assert [c.reason for c in st.checks() if c.name == "layout_ok"] == [st.layout_refusal]
        assert redis.keyspace.call("HGETALL", lease_key("ecomind-streams")) == [], "no lease round ran"
        assert not st.leader and not sidecar.exporter.exporting(sidecar.exporter.clock())
        assert sidecar.agent is None and not tap.done(), "the tap waits without a consumer"
        assert st.redis_ok and not st.ready
        # Even refused, the replica is on record as running its layout: that layout is not purged under it.
        record = redis.keyspace.call("HGET", members_key("ecomind-streams"), st.replica_id)
        assert record.startswith(f"{LAYOUT_VERSION}:")
        tap.cancel()  # before the layout clears: this test has no broker for it
        redis.keyspace.call("DEL", "{ecomind-streams}:v2:offsets")  # what purge-layout does
        await asyncio.sleep(0.2)
        assert st.layout_refusal is None and [c.ok for c in st.checks() if c.name == "layout_ok"] == [True]
        assert st.leader and sidecar.exporter.exporting(sidecar.exporter.clock())
        assert redis.keyspace.call("GET", marker_key("ecomind-streams")) == str(LAYOUT_VERSION)
    finally:
        for task in (rounds, tap):
            task.cancel()
        await asyncio.gather(rounds, tap, return_exceptions=True)


class _Unreachable(LayoutRedis):
    """Fails the first `failures` script calls as a Redis out of reach does."""

    failures = 3

    def register_script(self, source: str) -> Any:
        run = super().register_script(source)

        async def failing(keys: list[str], args: list[Any]) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise RedisConnectionError("Connection refused")
            return await run(keys=keys, args=args)

        return failing


async def test_a_redis_out_of_reach_at_start_is_polled_not_backed_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sidecar_module, "LAYOUT_REDIS_RETRY_S", 0.05)
    redis = _Unreachable(Keyspace(time.time))
    sidecar = Sidecar(Settings(), 6066, redis=redis)  # type: ignore[arg-type]
    layout = asyncio.create_task(sidecar._layout_in_use())
    try:
        await asyncio.sleep(0.02)
        assert not layout.done() and sidecar.status.redis_ok is False
        await asyncio.wait_for(layout, 2)  # raised into the services' back-off, it would wait a second or more
        assert sidecar.status.redis_ok and sidecar.status.layout_refusal is None and redis.failures == 0
    finally:
        layout.cancel()


def test_the_setting_takes_refuse_or_reread_and_nothing_else() -> None:
    assert Settings.from_env({}).layout_upgrade == "refuse"
    assert Settings.from_env({"STREAMS_LAYOUT_UPGRADE": "Refuse"}).layout_upgrade == "refuse"
    assert Settings.from_env({"STREAMS_LAYOUT_UPGRADE": "reread"}).layout_upgrade == "reread"
    with pytest.raises(SettingsError, match="STREAMS_LAYOUT_UPGRADE='rebuild': expected one of REFUSE, REREAD"):
        Settings.from_env({"STREAMS_LAYOUT_UPGRADE": "rebuild"})
