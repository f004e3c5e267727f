"""The lease scripts beside the build before the shared lease (tables/lease.py): a taker finding no record
waits unless there is no state at all, and a release keeps layout 3's key in the releaser's name until its
series are stale. The real scripts, in Lua through lupa, over the simulated keyspace; the old build's own
code runs beside them in tests/unit/sim/test_exporter_simulator.py."""

from __future__ import annotations

from tables.layout import offsets_key
from tables.lease import Lease, LeaseStore, lease_key, legacy_lease_key, legacy_offsets_key
from tests.sim import releases
from tests.unit.tables.layout_redis import APP, LayoutRedis, layout_redis

TTL_MS, GRACE_MS, POLL_MS = 10_000, 2_000, 500


def _with_state(clock: list[float]) -> LayoutRedis:
    redis = layout_redis(clock)
    redis.keyspace.call("HSET", legacy_offsets_key(APP), "events\x000", "41")
    return redis


def test_the_offsets_key_read_is_the_one_layout_3_writes() -> None:
    # Named whole, as the other releases' keys: a build of another layout still reads layout 3's state.
    assert legacy_offsets_key("a") == "{a}:v3:offsets" == offsets_key("a", 3)


async def test_no_record_and_no_state_is_a_fresh_install_exported_at_once() -> None:
    redis = layout_redis([1_000.0])
    redis.keyspace.call("HSET", "{other}:v3:offsets", "events\x000", "41")  # another app's state
    hold = await LeaseStore(redis, APP).hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (hold.lease, hold.wait_s, hold.fresh) == (Lease.TAKEN, 0.0, True)


async def test_no_record_beside_state_waits_two_graces_as_after_an_old_builds_term() -> None:
    clock = [1_000.0]
    redis = _with_state(clock)
    leases = LeaseStore(redis, APP)
    hold = await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (hold.lease, hold.wait_s, hold.fresh) == (Lease.TAKEN, 4.0, True)
    # The wait is on record: a renewal whose predecessor's reply was lost still says it.
    clock[0] += 1.5
    renewed = await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (renewed.lease, renewed.wait_s, renewed.fresh) == (Lease.KEPT, 2.5, False)


async def test_an_old_builds_key_deleted_at_its_stop_leaves_a_taker_waiting() -> None:
    clock = [1_000.0]
    redis = _with_state(clock)
    redis.keyspace.call("SET", legacy_lease_key(APP), "old-0", "PX", "10000")
    redis.keyspace.call("DEL", legacy_lease_key(APP))  # its SIGTERM, before any round of this release
    hold = await LeaseStore(redis, APP).hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (hold.lease, hold.wait_s) == (Lease.TAKEN, 4.0)


async def test_a_release_keeps_layout_3s_key_in_its_name_until_its_series_are_stale() -> None:
    clock = [1_000.0]
    redis = _with_state(clock)
    leases = LeaseStore(redis, APP)
    await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    key = legacy_lease_key(APP)
    assert redis.keyspace.call("PTTL", key) == TTL_MS + GRACE_MS  # a lapse too leaves it until the grace ends
    clock[0] += 6.0
    assert await leases.release("pod-a", 9_000)
    assert (redis.keyspace.call("GET", key), redis.keyspace.call("PTTL", key)) == ("pod-a", 9_000)
    # The old build's own lease script finds it held (0: lost).
    old_take = releases.old_namespace(lambda: clock[0])["_LEASE_LUA"]
    assert redis.run(old_take, [key], ["old-0", "10000"]) == 0
    # A replica of this release reads it as the released holder's, and waits the released bound, no more.
    clock[0] += 1.0
    taken = await leases.hold("pod-b", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (taken.lease, taken.wait_s) == (Lease.TAKEN, 8.0)
    assert redis.keyspace.hmget(lease_key(APP), ["holder", "state"]) == ["pod-b", "held"]
    assert redis.keyspace.call("GET", key) == "pod-b"


async def test_a_release_never_shortens_the_key_and_the_old_build_takes_it_once_gone() -> None:
    clock = [1_000.0]
    redis = _with_state(clock)
    leases = LeaseStore(redis, APP)
    key = legacy_lease_key(APP)
    await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)  # exporting from 4 s on (state, no record)
    clock[0] += 5.0
    assert await leases.release("pod-a", 0)  # drained: nothing visible, yet the key stays to its term's end
    assert (redis.keyspace.call("GET", key), redis.keyspace.call("PTTL", key)) == ("pod-a", 7_000)
    # A taker meanwhile: the key still in the releaser's name, so no old build came between: at once.
    taken = await leases.hold("pod-b", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (taken.lease, taken.wait_s) == (Lease.TAKEN, 0.0)
    clock[0] += 4.0
    assert await leases.release("pod-b", 0)
    clock[0] += 12.0
    old_take = releases.old_namespace(lambda: clock[0])["_LEASE_LUA"]
    assert redis.run(old_take, [key], ["old-0", "10000"]) == 1
    clock[0] += 1.0
    assert redis.run(releases.old_namespace(lambda: clock[0])["_RELEASE_LUA"], [key], ["old-0"]) == 1
    # The record still says pod-b released long ago, but the key is gone: an old build may have exported
    # since (it did), so the taker waits two graces rather than go at once.
    late = await leases.hold("pod-c", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (late.lease, late.wait_s, late.fresh) == (Lease.TAKEN, 4.0, False)


async def test_a_lapsed_term_is_taken_after_its_grace_while_its_key_stays() -> None:
    clock = [1_000.0]
    redis = _with_state(clock)
    leases = LeaseStore(redis, APP)
    await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    clock[0] += 10.5  # pod-a crashed: its term lapsed, its key stays until the grace is over too
    taken = await leases.hold("pod-b", TTL_MS, GRACE_MS, POLL_MS, 0)
    assert (taken.lease, taken.wait_s) == (Lease.TAKEN, 1.5)


async def _held_by_pod_a() -> tuple[list[float], LayoutRedis, LeaseStore, str]:
    """pod-a holds the lease (and layout 3's key beside it) on a clock the test moves."""
    clock = [1_000.0]
    redis = layout_redis(clock)
    leases = LeaseStore(redis, APP)
    await leases.hold("pod-a", TTL_MS, GRACE_MS, POLL_MS, 0)
    return clock, redis, leases, legacy_lease_key(APP)


async def test_a_release_leaves_an_old_builds_key_alone() -> None:
    _, redis, leases, key = await _held_by_pod_a()
    redis.keyspace.call("DEL", key)
    redis.keyspace.call("SET", key, "old-0", "PX", "7000")  # an old build took it after the key lapsed, say
    assert await leases.release("pod-a", 3_000)
    assert (redis.keyspace.call("GET", key), redis.keyspace.call("PTTL", key)) == ("old-0", 7_000)


async def test_a_release_after_the_key_lapsed_puts_it_back_until_the_bound() -> None:
    clock, redis, leases, key = await _held_by_pod_a()
    clock[0] += 12.5
    assert redis.keyspace.call("GET", key) is None
    assert await leases.release("pod-a", 3_000)
    assert (redis.keyspace.call("GET", key), redis.keyspace.call("PTTL", key)) == ("pod-a", 3_000)
    clock[0] += 3.0
    assert await leases.release("pod-a", 0)
    assert redis.keyspace.call("GET", key) is None
