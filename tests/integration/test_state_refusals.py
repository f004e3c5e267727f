"""Stored values that are not numbers, on a real redis-server and a real sidecar: the batch script checks
every value it increments or compares before its first write and refuses whole (before, a runtime error
halfway kept the first part, and each retry counted it again: `processed` went 2, 4, 6 while the offsets
stayed); the tap pauses the partition instead of retrying at once; the scrape leaves the one series out."""

from __future__ import annotations

import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis as redis_sync

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tables.delta import Delta
from tables.keys import LAST_TS, PROCESSED, Keys
from tables.writes import InvalidStoredValue, OffsetMove
from tests.integration.conftest import Names, processed, sidecar_env
from tests.integration.kafka_io import Out, produce
from tests.integration.redis_io import apply_batch

pytestmark = pytest.mark.integration

NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z
DAY_MS = 86_400_000
BAD = "x"  # no digit at all: not even the windows' lists read a day out of it


class _Rec:
    def __init__(self, value: bytes) -> None:
        self.value, self.offset, self.timestamp, self.partition = value, 0, NOW_MS, 0


def _delta(step: int) -> Delta:
    """Raw and enriched events of three orgs over the last 40 days: every kind of stored value is written."""
    ctx = FoldContext(DayCalendar(ZoneInfo("Europe/Paris")), NOW_MS + step * 3_600_000, 2, DAY_MS, 65536)
    events = [
        raw_event(f"o{i % 3}", f"u{i % 7}", NOW_MS - (i % 40) * DAY_MS, model=f"m{i % 2}", kwh=0.25, co2_kg=1e-9)
        for i in range(60)
    ]
    delta = Delta()
    fold_raw(delta, "raw", [_Rec(e) for e in events], ctx)
    fold_enriched(delta, "enriched", [_Rec(e) for e in events[::2]], ctx)
    return delta


def _dump(client: redis_sync.Redis) -> dict[str, tuple[int, bytes]]:
    return {key.decode(): (client.pttl(key), client.dump(key)) for key in sorted(client.keys("*"))}  # type: ignore[misc,union-attr]


def _same(now: dict[str, tuple[int, bytes]], then: dict[str, tuple[int, bytes]]) -> bool:
    """The same keys and values, and expiries only as far apart as the time between the two reads."""
    return now.keys() == then.keys() and all(
        now[k][1] == then[k][1] and abs(now[k][0] - then[k][0]) < 5_000 for k in now
    )


def _restore(client: redis_sync.Redis, saved: dict[str, tuple[int, bytes]]) -> None:
    client.flushall()
    for key, (ttl, blob) in saved.items():
        client.restore(key, max(ttl, 0), blob)


def _hashes(client: redis_sync.Redis) -> dict[str, dict[str, str]]:
    out = {}
    for key in client.keys("*"):
        if client.type(key) == b"hash":
            out[key.decode()] = {f.decode(): v.decode() for f, v in client.hgetall(key).items()}  # type: ignore[union-attr]
    return out


def test_every_value_the_script_increments_or_compares_is_checked_before_its_first_write(workdir: Path) -> None:
    redis = LocalRedis(workdir / "redis-refusals").start(keep_data=False)
    client = redis_sync.Redis.from_url(redis.url)
    keys = Keys("s")
    try:
        apply_batch(redis.url, _delta(0), [OffsetMove("raw", 0, None, 10)])
        first = _dump(client)
        before = _hashes(client)
        apply_batch(redis.url, _delta(1), [OffsetMove("raw", 0, 10, 20)])
        after = _hashes(client)
        # What a clean second batch increments: each of these, made not a number, must refuse it whole.
        active = keys.active_prefix("u"), keys.active_prefix("o")  # day lists, rewritten rather than incremented
        moved = {
            (k, f)
            for k, fields in before.items()
            for f, v in fields.items()
            if after.get(k, {}).get(f) != v and k != keys.offsets and not k.startswith(active)
        }
        assert len(moved) > 20 and (keys.window_state, "sweep") in moved
        refused = set()
        for key, fields in before.items():
            for field in fields:
                if key == keys.offsets:
                    continue
                _restore(client, first)
                client.hset(key, field, BAD)
                corrupt = _dump(client)
                try:
                    apply_batch(redis.url, _delta(1), [OffsetMove("raw", 0, 10, 20)])
                except InvalidStoredValue as exc:
                    assert (exc.key, exc.field) == (key, field)
                    assert _same(_dump(client), corrupt), f"refused on {key} {field} after writing"
                    refused.add((key, field))
        assert moved <= refused, moved - refused
        assert (keys.key(LAST_TS), "raw") in refused  # compared, not incremented
    finally:
        redis.stop()


def test_the_sidecar_pauses_on_a_value_that_is_not_a_number_and_counts_once_repaired(  # type: ignore[no-untyped-def]
    broker, names: Names, workdir: Path
) -> None:
    redis = LocalRedis(workdir / f"redis-{names.app_id}").start(keep_data=False)
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=1)
    env = sidecar_env(broker, redis, names, STREAMS_STALL_MAX_BACKOFF_SECONDS="2")
    proc = SidecarProc(workdir / names.app_id, env).start()
    keys = Keys(names.app_id)
    now = int(time.time() * 1000)
    try:
        proc.wait_ready()
        produce(broker.bootstrap, names.raw, [Out(raw_event("o1", f"u{i}", now)) for i in range(2)])
        wait_until(lambda: processed(proc.scrape(), names) == 2, 60, what="the first events folded")
        client.hset(keys.key(LAST_TS), names.raw, "garbage")  # something else wrote into the tables
        produce(broker.bootstrap, names.raw, [Out(raw_event("o1", f"u{i}", now)) for i in range(2, 5)])
        wait_until(
            lambda: (
                (value(proc.scrape(), "ecomind_streams_state_writes_refused_total", reason="invalid_value") or 0) >= 3
            ),
            60,
            what="the batch refused, then refused again after each back-off",
        )
        status, body = proc.get("/metrics")
        assert status == 200, body[:500]
        m = proc.scrape()
        assert processed(m, names) == 2, "a refused batch counts nothing, however often it is tried"
        assert client.hget(keys.key(PROCESSED), names.raw) == "2"
        assert value(m, "ecomind_streams_state_values_unreadable", table="last_ts") == 1.0
        assert (
            value(m, "ecomind_streams_partition_stalled", topic=names.raw, partition="0", reason="state_write_refused")
            == 1.0
        )
        # The lag families are in the same answer: one bad value never costs the endpoint.
        assert b"# TYPE ecomind_worker_kafka_lag gauge" in body
        assert re.search(rb"\necomind_streams_lag_\w+(\{[^}]*\})? \d", body), "a lag sample with its value"
        _, ready = proc.get("/ready")
        assert b"state_write_refused" in ready and keys.key(LAST_TS).encode() in ready, ready[:2000]
        assert f"state write refused (invalid_value) on key {keys.key(LAST_TS)} field '{names.raw}'" in proc.log_tail(
            50_000
        )
        client.hset(keys.key(LAST_TS), names.raw, str(now - 1000))  # repaired
        wait_until(lambda: processed(proc.scrape(), names) == 5, 60, what="the paused batch written once repaired")
        wait_until(
            lambda: (
                value(
                    proc.scrape(),
                    "ecomind_streams_partition_stalled",
                    topic=names.raw,
                    partition="0",
                    reason="state_write_refused",
                )
                is None
            ),
            60,
            what="the stall cleared",
        )
        time.sleep(2)
        assert client.hget(keys.key(PROCESSED), names.raw) == "5", "each event counted exactly once"
        assert value(proc.scrape(), "ecomind_streams_state_values_unreadable", table="last_ts") is None
    finally:
        proc.stop()
        redis.stop()
