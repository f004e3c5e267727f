"""Key layouts: the start-up check's real Lua script over the simulated keyspace, and the purge of an older
layout over an in-memory keyspace with Redis's SCAN paging.

tests/integration/test_upgrade.py runs the same paths on redis-server beside the previous release.
"""

from __future__ import annotations

import re

import pytest

from tables import purge as purge_module
from tables.keys import LAYOUT_VERSION, Keys
from tables.layout import (
    BROKEN,
    CHECK_LUA,
    OK,
    REFUSED,
    SEEN_LUA,
    TOOK_OVER,
    WAITING,
    LayoutStore,
    marker_key,
    members_key,
)
from tables.lease import Lease, LeaseStore, lease_key, legacy_lease_key
from tables.purge import PURGE_LUA, PurgeRefused, purge, scan_pattern
from tests.unit.tables.layout_redis import APP, fleet, layout_redis, stored_offsets


async def test_an_empty_redis_is_claimed_for_this_layout() -> None:
    redis = layout_redis()
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found, check.runs) == (OK, LAYOUT_VERSION, True)
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)


async def test_an_older_layouts_state_is_refused_until_the_operator_opts_in() -> None:
    redis = layout_redis()
    stored_offsets(redis, "{app}:v2:offsets")
    store = LayoutStore(redis, APP)
    refused = await store.check(take_over=False)
    assert (refused.outcome, refused.found, refused.runs) == (REFUSED, 2, False)
    assert refused.reason == f"state in an older key layout (2, this release writes {LAYOUT_VERSION})"
    assert redis.keyspace.call("GET", marker_key(APP)) is None, "a refusal claims nothing"
    took = await store.check(take_over=True)
    assert (took.outcome, took.found, took.runs) == (TOOK_OVER, 2, True)
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)
    # The marker now decides: the next replica runs without the setting, the old keys still there.
    assert (await store.check(take_over=False)).outcome == OK
    assert redis.keyspace.call("HGET", "{app}:v2:offsets", "raw:0") == "42"


async def test_this_layouts_own_state_beside_older_leftovers_is_the_one_in_use() -> None:
    redis = layout_redis()
    stored_offsets(redis, "{app}:v2:offsets")  # left by the silent re-read of a release before the marker
    stored_offsets(redis, Keys(APP).offsets)
    assert (await LayoutStore(redis, APP).check(take_over=False)).outcome == OK
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)


@pytest.mark.parametrize(("marked", "side"), [(LAYOUT_VERSION + 1, "a newer"), (LAYOUT_VERSION - 1, "an older")])
async def test_a_marker_naming_another_layout_is_refused(marked: int, side: str) -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), str(marked))
    stored_offsets(redis, Keys(APP).offsets)  # this layout's keys do not outvote the marker
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found) == (REFUSED, marked)
    assert check.reason.startswith(f"state in {side} key layout ({marked},")


async def test_layout_one_is_recognised_by_its_unversioned_offsets() -> None:
    redis = layout_redis()
    stored_offsets(redis, "{app}:offsets")
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found) == (REFUSED, 1)


async def test_an_opted_in_replica_waits_while_an_exporter_with_its_own_lease_runs() -> None:
    redis = layout_redis()
    stored_offsets(redis, "{app}:v2:offsets")
    redis.keyspace.call("SET", "{app}:v2:leader", "old-pod:6066", "PX", "10000")  # layout 2's lease
    store = LayoutStore(redis, APP)
    waiting = await store.check(take_over=True)
    assert (waiting.outcome, waiting.runs) == (WAITING, False)
    assert waiting.reason == "an exporter of key layout 2 is still running"
    assert redis.keyspace.call("GET", marker_key(APP)) is None
    redis.keyspace.call("DEL", "{app}:v2:leader")  # its SIGTERM, or the key's expiry
    assert (await store.check(take_over=True)).outcome == TOOK_OVER


async def test_a_later_layout_leaves_the_shared_lease_to_the_lease_protocol() -> None:
    """Layout 3's lease key is held beside the shared lease by its releases since the shared lease: the
    protocol keeps one exporter there. Held by anyone else, it is a release before that one."""
    redis = layout_redis()
    stored_offsets(redis, "{app}:v3:offsets")
    redis.keyspace.call("SET", legacy_lease_key(APP), "pod-a:6066", "PX", "10000")
    store = LayoutStore(redis, APP, layout=4)
    assert (await store.check(take_over=True)).outcome == WAITING
    redis.keyspace.call("HSET", lease_key(APP), "holder", "pod-a:6066", "state", "held")
    assert (await store.check(take_over=True)).outcome == TOOK_OVER
    assert redis.keyspace.call("GET", marker_key(APP)) == "4"


def test_every_script_runs_at_maxmemory_under_noeviction() -> None:
    """Without the flag Redis refuses a script that may write once memory is full: the check would fail at
    every start, and the record of a running replica would lapse."""
    for script in (CHECK_LUA, SEEN_LUA, PURGE_LUA):
        assert script.startswith("#!lua flags=allow-oom\n")


@pytest.mark.parametrize("value", ["three", "0", "3.5", "-3", ""])
async def test_a_marker_that_is_no_layout_number_is_a_layout_problem_named(value: str) -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", marker_key(APP), value)
    check = await LayoutStore(redis, APP).check(take_over=True)
    assert (check.outcome, check.runs) == (BROKEN, False)
    assert check.refusal.startswith(f"the layout marker {{app}}:layout holds {value!r}, not a layout number")
    assert redis.keyspace.call("GET", marker_key(APP)) == value, "an opt-in does not overwrite it"


async def test_a_key_of_the_wrong_type_is_a_layout_problem_named() -> None:
    redis = layout_redis()
    redis.keyspace.call("SET", "{app}:v2:offsets", "not a hash")
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.runs) == (BROKEN, False)
    assert "{app}:v2:offsets is a string, not a hash" in check.refusal


@pytest.mark.parametrize(
    ("state", "says", "never"),
    [
        ({"{app}:v2:offsets": "o"}, "`python -m streams.tools.layout purge-layout --layout 2`", None),
        ({"{app}:offsets": "o"}, "layout 1's keys carry no version, so no purge can tell them apart", "--layout"),
        ({marker_key(APP): str(LAYOUT_VERSION + 1)}, f"to roll back to layout {LAYOUT_VERSION}, set ", "--layout"),
    ],
)
async def test_a_refusal_gives_advice_that_works(state: dict[str, str], says: str, never: str | None) -> None:
    redis = layout_redis()
    for key, kind in state.items():
        stored_offsets(redis, key) if kind == "o" else redis.keyspace.call("SET", key, kind)
    refusal = (await LayoutStore(redis, APP).check(take_over=False)).refusal
    assert says in refusal and "STREAMS_LAYOUT_UPGRADE=reread" in refusal
    assert never is None or never not in refusal, "no advice to run a purge that would be refused"


# An older layout's exporter that comes back ------------------------------------------------------
async def test_a_layout_two_exporter_back_after_a_take_over_holds_the_shared_lease() -> None:
    """The check ran once, at the take-over; a layout-2 pod that takes its own lease again later must still
    keep every replica of the shared lease quiet, running or starting, on every round."""
    clock = [1_000.0]
    redis = layout_redis(clock)
    leases = LeaseStore(redis, APP)
    assert (await leases.hold("new-a", 10_000, 2_000, 500, 0)).lease == Lease.TAKEN
    redis.keyspace.call("SET", "{app}:v2:leader", "old-pod:6066", "PX", "10000")
    assert (await leases.hold("new-a", 10_000, 2_000, 500, 0)).lease == Lease.LOST
    assert (await leases.hold("new-b", 10_000, 2_000, 500, 0)).lease == Lease.LOST
    assert await leases.holder() == "v2:old-pod:6066"
    assert redis.keyspace.call("GET", legacy_lease_key(APP)) is None, "new-a's term ended with the lease"
    redis.keyspace.call("DEL", "{app}:v2:leader")  # its SIGTERM: its series may be seen for its grace yet
    assert (await leases.hold("new-b", 10_000, 2_000, 500, 0)).lease == Lease.LOST, "its term runs to its key's end"
    clock[0] += 10.0
    taken = await leases.hold("new-b", 10_000, 2_000, 500, 0)
    assert (taken.lease, taken.wait_s) == (Lease.TAKEN, 4.0), "then twice its grace: it released no record"


async def test_a_purge_deletes_only_that_layouts_keys_in_batches() -> None:
    redis = fleet(old=1234, new=50)
    dry = await purge(redis, APP, 2, dry_run=True, batch=100)
    assert (dry.keys, dry.in_use, dry.marker_cleared) == (1235, 3, False)
    assert len(redis.data) == 1234 + 50 + 6, "a dry run deletes nothing"
    done = await purge(redis, APP, 2, batch=100)
    assert (done.keys, done.marker_cleared) == (1235, False)
    assert sorted(k for k in redis.data if ":v2:" in k) == ["{other}:v2:offsets"]
    assert sum(1 for k in redis.data if k.startswith("{app}:v3:org:")) == 50
    assert "{app}:v30:offsets" in redis.data and redis.scans > 12


async def test_purging_layout_three_keeps_the_lease_key_newer_releases_hold() -> None:
    redis = fleet(old=0, new=7)
    redis.keyspace.call("SET", marker_key(APP), "4")
    done = await purge(redis, APP, 3, batch=3)
    assert done.keys == 7
    assert redis.data[legacy_lease_key(APP)] == "pod:1" and "{app}:v30:offsets" in redis.data


async def test_stop_purge_start_clears_the_marker_of_a_layout_no_replica_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The marker names the old layout once a release writes it: the next layout change's purge takes it,
    marker and all, or the new replicas would wait for good."""
    clock = [1_000.0]
    redis = layout_redis(clock)
    stored_offsets(redis, "{app}:v3:offsets")
    redis.keyspace.call("SET", "{app}:v3:org:o1", "1")
    old = LayoutStore(redis, APP, layout=3)
    assert (await old.check(take_over=False)).outcome == OK
    await old.seen("old-pod:6066", 20_000)
    new = LayoutStore(redis, APP, layout=4)
    assert (await new.check(take_over=False)).outcome == REFUSED
    monkeypatch.setattr(purge_module, "LAYOUT_VERSION", 4)  # the purge run from the new release's image
    with pytest.raises(
        PurgeRefused, match=r"replica old-pod:6066 of layout 3 is running \(it counts as running for 20s"
    ):
        await purge(redis, APP, 3)
    clock[0] += 19.0
    with pytest.raises(PurgeRefused, match="for 1s more"):
        await purge(redis, APP, 3, dry_run=True)
    clock[0] += 1.0  # its record ran out: a crash; a clean stop clears it at once (seen(..., 0))
    dry = await purge(redis, APP, 3, dry_run=True)
    assert (dry.keys, dry.in_use, dry.marker_cleared) == (2, 3, False)
    assert redis.keyspace.call("GET", marker_key(APP)) == "3", "a dry run keeps the marker"
    done = await purge(redis, APP, 3)
    assert (done.keys, done.marker_cleared) == (2, True) and redis.keyspace.call("GET", marker_key(APP)) is None
    assert (await new.check(take_over=False)).outcome == OK
    assert redis.keyspace.call("GET", marker_key(APP)) == "4"


async def test_a_layout_with_a_running_replica_is_never_purged_marker_or_not() -> None:
    redis = fleet(old=3, new=3)
    redis.keyspace.call("SET", marker_key(APP), "4")  # a rebuild took over; layout 3's replicas still run
    running = LayoutStore(redis, APP, layout=3)
    await running.seen("pod-a:6066", 10_000)
    await LayoutStore(redis, APP, layout=4).seen("pod-b:6066", 10_000)
    with pytest.raises(PurgeRefused, match="replica pod-a:6066 of layout 3 is running"):
        await purge(redis, APP, 3)
    assert sum(1 for k in redis.data if k.startswith("{app}:v3:org:")) == 3
    await running.seen("pod-a:6066", 0)  # its clean stop
    assert redis.keyspace.call("HGETALL", members_key(APP))[0] == "pod-b:6066"
    assert (await purge(redis, APP, 3)).keys == 3


@pytest.mark.parametrize(
    ("marker", "layout", "why"),
    [
        (None, LAYOUT_VERSION, f"layout {LAYOUT_VERSION} is the one in use (no marker yet: this release says so)"),
        ("3", 1, "layout 1 keys carry no version"),
        ("three", 2, "the layout marker {app}:layout holds 'three', not a layout number"),
    ],
)
async def test_what_a_purge_cannot_tell_apart_is_never_purged(marker: str | None, layout: int, why: str) -> None:
    redis = fleet(old=3, new=3)
    if marker is None:
        redis.keyspace.call("DEL", marker_key(APP))
    else:
        redis.keyspace.call("SET", marker_key(APP), marker)
    before = dict(redis.data)
    with pytest.raises(PurgeRefused, match=re.escape(why)):
        await purge(redis, APP, layout)
    assert redis.data == before


async def test_a_layout_whose_release_still_exports_is_not_purged() -> None:
    redis = fleet(old=3, new=3)
    redis.keyspace.call("SET", "{app}:v2:leader", "old-pod:6066")
    with pytest.raises(PurgeRefused, match="holds its exporter lease"):
        await purge(redis, APP, 2)
    assert sum(1 for k in redis.data if k.startswith("{app}:v2:")) == 5


def test_the_scan_pattern_is_the_layouts_prefix_and_a_colon() -> None:
    assert scan_pattern("app", 3) == "{app}:v3:*"
    assert scan_pattern("a*[b]", 2) == "{a\\*\\[b\\]}:v2:*"
    assert Keys("app").prefix + ":" == scan_pattern("app", LAYOUT_VERSION)[:-1]
