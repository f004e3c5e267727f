"""The lease store's Python side (tables/lease.py): the key names every release shares, who `holder()`
names through a term and after its release, on clients that answer text or bytes. The scripts are the
real ones over the simulated keyspace; tests/integration/test_lease_script.py holds them to a real Redis."""

from __future__ import annotations

from typing import Any

from redis.crc import key_slot

from tables.keys import state_prefix
from tables.lease import Lease, LeaseStore, lease_key, legacy_lease_key, members_key
from tests.unit.tables.layout_redis import APP, LayoutRedis, layout_redis


class _BytesRedis(LayoutRedis):
    """A client without decode_responses: hashes answer bytes."""

    async def hmget(self, key: str, fields: list[str]) -> list[Any]:
        return [None if v is None else v.encode() for v in self.keyspace.hmget(key, fields)]


def test_the_lease_keys_are_the_names_other_releases_read() -> None:
    # A rolling upgrade runs two releases on one Redis: a renamed key would be a second lease, exported
    # beside the first, and a members hash the other release never reads.
    assert (lease_key("a"), legacy_lease_key("a"), members_key("a")) == (
        "{a}:exporter",
        "{a}:v3:leader",
        "{a}:exporter:members",
    )
    # One hash tag with the state, so every script's keys share a Redis Cluster slot.
    slots = {key_slot(k.encode()) for k in (lease_key("a"), members_key("a"), state_prefix("a"))}
    assert len(slots) == 1


async def _holder_through_a_term(redis: LayoutRedis) -> list[str | None]:
    leases = LeaseStore(redis, APP)
    seen = [await leases.holder()]
    assert (await leases.hold("pod-a", 10_000, 2_000, 500, 0)).lease == Lease.TAKEN
    seen.append(await leases.holder())
    assert await leases.release("pod-a", 0)
    seen.append(await leases.holder())
    assert (await leases.hold("pod-b", 10_000, 2_000, 500, 0)).lease == Lease.TAKEN
    seen.append(await leases.holder())
    return seen


async def test_holder_names_the_current_term_only() -> None:
    clock = [1_000.0]
    assert await _holder_through_a_term(layout_redis(clock)) == [None, "pod-a", None, "pod-b"]


async def test_holder_reads_a_bytes_answering_client_as_text() -> None:
    from tests.sim.lua_redis import Keyspace

    clock = [1_000.0]
    redis = _BytesRedis(Keyspace(lambda: clock[0]))
    assert await _holder_through_a_term(redis) == [None, "pod-a", None, "pod-b"]


async def test_the_interval_a_holder_measured_reaches_the_next_round() -> None:
    leases = LeaseStore(layout_redis([1_000.0]), APP)
    first = await leases.hold("pod-a", 10_000, 2_000, 500, 0)
    assert first.fleet_interval_s == 0.0  # nothing measured yet
    renewed = await leases.hold("pod-a", 10_000, 2_000, 500, 15_000)
    assert (renewed.lease, renewed.fleet_interval_s) == (Lease.KEPT, 15.0)
