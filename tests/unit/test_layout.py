"""Key layouts: the start-up check's real Lua script over the simulated keyspace, the sidecar's wait on it,
the setting, and the purge of an older layout over an in-memory keyspace with Redis's SCAN paging.

tests/integration/test_upgrade.py runs the same paths on redis-server beside the previous release.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from streams import sidecar as sidecar_module
from streams.env_reader import SettingsError
from streams.layout import take_over_from_env
from streams.settings import Settings
from streams.sidecar import Sidecar
from tables.keys import LAYOUT_VERSION, Keys
from tables.layout import OK, REFUSED, TOOK_OVER, WAITING, LayoutStore, PurgeRefused, marker_key, purge, scan_pattern
from tables.lease import lease_key, legacy_lease_key
from tests.sim.lua_redis import Keyspace, Scripts

APP = "app"


def _redis() -> Scripts:
    return Scripts(Keyspace(time.time))


def _offsets(redis: Scripts, key: str) -> None:
    redis.keyspace.call("HSET", key, "raw:0", "42", "raw:0:id", "AAAAAAAAAAAAAAAAAAAAAA")


async def test_an_empty_redis_is_claimed_for_this_layout() -> None:
    redis = _redis()
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found, check.runs) == (OK, LAYOUT_VERSION, True)
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)


async def test_an_older_layouts_state_is_refused_until_the_operator_opts_in() -> None:
    redis = _redis()
    _offsets(redis, "{app}:v2:offsets")
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
    redis = _redis()
    _offsets(redis, "{app}:v2:offsets")  # left by the silent re-read of a release before the marker
    _offsets(redis, Keys(APP).offsets)
    assert (await LayoutStore(redis, APP).check(take_over=False)).outcome == OK
    assert redis.keyspace.call("GET", marker_key(APP)) == str(LAYOUT_VERSION)


@pytest.mark.parametrize(("marked", "side"), [(LAYOUT_VERSION + 1, "a newer"), (LAYOUT_VERSION - 1, "an older")])
async def test_a_marker_naming_another_layout_is_refused(marked: int, side: str) -> None:
    redis = _redis()
    redis.keyspace.call("SET", marker_key(APP), str(marked))
    _offsets(redis, Keys(APP).offsets)  # this layout's keys do not outvote the marker
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found) == (REFUSED, marked)
    assert check.reason.startswith(f"state in {side} key layout ({marked},")


async def test_layout_one_is_recognised_by_its_unversioned_offsets() -> None:
    redis = _redis()
    _offsets(redis, "{app}:offsets")
    check = await LayoutStore(redis, APP).check(take_over=False)
    assert (check.outcome, check.found) == (REFUSED, 1)


async def test_an_opted_in_replica_waits_while_an_exporter_with_its_own_lease_runs() -> None:
    redis = _redis()
    _offsets(redis, "{app}:v2:offsets")
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
    redis = _redis()
    _offsets(redis, "{app}:v3:offsets")
    redis.keyspace.call("SET", legacy_lease_key(APP), "pod-a:6066", "PX", "10000")
    store = LayoutStore(redis, APP, layout=4)
    assert (await store.check(take_over=True)).outcome == WAITING
    redis.keyspace.call("HSET", lease_key(APP), "holder", "pod-a:6066", "state", "held")
    assert (await store.check(take_over=True)).outcome == TOOK_OVER
    assert redis.keyspace.call("GET", marker_key(APP)) == "4"


class _SidecarRedis(Scripts):
    """What the lease loop calls on Redis: the real scripts, HMGET, and CONFIG GET."""

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)

    async def config_get(self, name: str) -> dict[str, str]:
        return {name: "noeviction"}

    async def ping(self) -> bool:
        return True


async def test_the_lease_loop_waits_for_the_layout_and_starts_once_the_old_one_is_gone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sidecar_module, "LAYOUT_RECHECK_S", 0.05)
    redis = _SidecarRedis(Keyspace(time.time))
    _offsets(redis, "{ecomind-streams}:v2:offsets")
    sidecar = Sidecar(Settings(), 6066, redis=redis)  # type: ignore[arg-type]
    rounds = asyncio.create_task(sidecar._run_lease())
    tap = asyncio.create_task(sidecar._run_tap())
    try:
        await asyncio.sleep(0.2)
        assert sidecar.layout_refusal is not None and "older key layout (2" in sidecar.layout_refusal
        assert redis.keyspace.call("HGETALL", lease_key("ecomind-streams")) == [], "no lease round ran"
        assert not sidecar.status.leader and not sidecar.exporter.exporting(sidecar.exporter.clock())
        assert sidecar.agent is None and not tap.done(), "the tap waits without a consumer"
        assert sidecar.status.redis_ok and not sidecar.status.ready
        tap.cancel()  # before the layout clears: this test has no broker for it
        redis.keyspace.call("DEL", "{ecomind-streams}:v2:offsets")  # what purge-layout does
        await asyncio.sleep(0.2)
        assert sidecar.layout_refusal is None
        assert sidecar.status.leader and sidecar.exporter.exporting(sidecar.exporter.clock())
        assert redis.keyspace.call("GET", marker_key("ecomind-streams")) == str(LAYOUT_VERSION)
    finally:
        for task in (rounds, tap):
            task.cancel()
        await asyncio.gather(rounds, tap, return_exceptions=True)


def test_the_setting_takes_refuse_or_reread_and_nothing_else() -> None:
    assert take_over_from_env({}) is False
    assert take_over_from_env({"STREAMS_LAYOUT_UPGRADE": "refuse"}) is False
    assert take_over_from_env({"STREAMS_LAYOUT_UPGRADE": "reread"}) is True
    with pytest.raises(SettingsError, match="STREAMS_LAYOUT_UPGRADE='rebuild': expected one of REFUSE, REREAD"):
        take_over_from_env({"STREAMS_LAYOUT_UPGRADE": "rebuild"})


# The purge ------------------------------------------------------------------------------------------
class _Strings:
    """Keys, SCAN with a cursor over pages of `count` keys (MATCH applied per page, as Redis does), UNLINK."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.data = dict(keys)
        self.scans = 0
        self.cursors = [""]

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def exists(self, key: str) -> int:
        return int(key in self.data)

    async def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[str]]:
        # A cursor is where the last page ended, so keys deleted meanwhile never make it skip one (Redis's
        # guarantee: a key present through the whole scan is returned).
        self.scans += 1
        after = self.cursors[cursor] if cursor else ""
        page = sorted(k for k in self.data if k > after)[:count]
        if len(page) < count:
            return 0, [k for k in page if _glob(match).fullmatch(k)]
        self.cursors.append(page[-1])
        return len(self.cursors) - 1, [k for k in page if _glob(match).fullmatch(k)]

    async def unlink(self, *keys: str) -> int:
        return sum(1 for k in keys if self.data.pop(k, None) is not None)


def _glob(pattern: str) -> re.Pattern[str]:
    out, chars = "", iter(pattern)
    for c in chars:
        out += re.escape(next(chars)) if c == "\\" else ".*" if c == "*" else "." if c == "?" else re.escape(c)
    return re.compile(out)


def _fleet(old: int, new: int) -> dict[str, Any]:
    keys = {f"{{app}}:v2:org:o{i}": "1" for i in range(old)} | {f"{{app}}:v3:org:o{i}": "1" for i in range(new)}
    keys |= {"{app}:v2:offsets": "h", "{app}:v30:offsets": "h", "{other}:v2:offsets": "h", "{app}:exporter": "h"}
    keys |= {marker_key(APP): "3", legacy_lease_key(APP): "pod:1"}
    return keys


async def test_a_purge_deletes_only_that_layouts_keys_in_batches() -> None:
    redis = _Strings(_fleet(old=1234, new=50))
    dry = await purge(redis, APP, 2, dry_run=True, batch=100)
    assert (dry.keys, dry.in_use) == (1235, 3)
    assert len(redis.data) == 1234 + 50 + 6, "a dry run deletes nothing"
    done = await purge(redis, APP, 2, batch=100)
    assert done.keys == 1235
    assert sorted(k for k in redis.data if ":v2:" in k) == ["{other}:v2:offsets"]
    assert sum(1 for k in redis.data if k.startswith("{app}:v3:org:")) == 50
    assert "{app}:v30:offsets" in redis.data and redis.scans > 12


async def test_purging_layout_three_keeps_the_lease_key_newer_releases_hold() -> None:
    redis = _Strings(_fleet(old=0, new=7) | {marker_key(APP): "4"})
    done = await purge(redis, APP, 3, batch=3)
    assert done.keys == 7
    assert redis.data[legacy_lease_key(APP)] == "pod:1" and "{app}:v30:offsets" in redis.data


@pytest.mark.parametrize(
    ("marker", "layout", "why"),
    [
        ("3", 3, "layout 3 is the one in use (the marker says so)"),
        (None, LAYOUT_VERSION, f"layout {LAYOUT_VERSION} is the one in use (no marker yet: this release says so)"),
        ("3", 1, "layout 1 keys carry no version"),
    ],
)
async def test_the_layout_in_use_is_never_purged(marker: str | None, layout: int, why: str) -> None:
    keys = _fleet(old=3, new=3)
    if marker is None:
        del keys[marker_key(APP)]
    redis = _Strings(keys)
    with pytest.raises(PurgeRefused, match=re.escape(why)):
        await purge(redis, APP, layout)
    assert len(redis.data) == len(keys)


async def test_a_layout_whose_release_still_exports_is_not_purged() -> None:
    redis = _Strings(_fleet(old=3, new=3) | {"{app}:v2:leader": "old-pod:6066"})
    with pytest.raises(PurgeRefused, match="holds its exporter lease"):
        await purge(redis, APP, 2)
    assert sum(1 for k in redis.data if k.startswith("{app}:v2:")) == 5


def test_the_scan_pattern_is_the_layouts_prefix_and_a_colon() -> None:
    assert scan_pattern("app", 3) == "{app}:v3:*"
    assert scan_pattern("a*[b]", 2) == "{a\\*\\[b\\]}:v2:*"
    assert Keys("app").prefix + ":" == scan_pattern("app", LAYOUT_VERSION)[:-1]
