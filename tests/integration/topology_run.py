"""A sidecar on a Redis topology (streams/local/redis_topologies.py): known events in, exact figures out,
and the managed-Redis refusal (an eviction policy that is not noeviction) seen on /ready."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis

from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tests.integration.conftest import Names, sidecar_env
from tests.integration.kafka_io import Out, produce

# The truth: 3 orgs, 5 distinct users today (a user is one of an org: u1 of org_a is not u1 of org_b), 7 raw
# events, 2 enriched.
ORGS_USERS = [("org_a", "u1"), ("org_a", "u2"), ("org_a", "u1"), ("org_b", "u1"), ("org_b", "u3")]
ORGS_USERS += [("org_c", "u4"), ("org_c", "u4")]


def produce_truth(bootstrap: str, names: Names, partitions: int = 2) -> int:
    """The truth's raw events spread round-robin over `partitions` (sharded state puts partition p in
    shard p mod S: as many partitions as shards give every shard offsets and sums of its own)."""
    make_topics(bootstrap, [names.raw, names.enriched], partitions=partitions)
    now = int(time.time() * 1000)
    raws = [Out(raw_event(org, user, now - 1000 + i), i % partitions) for i, (org, user) in enumerate(ORGS_USERS)]
    produce(bootstrap, names.raw, raws)
    enriched = [
        Out(raw_event("org_a", "u1", now - 1000, kwh=0.25, co2_kg=0.125), 0),
        Out(raw_event("org_b", "u3", now - 997, kwh=1.5, co2_kg=0.5), 1),
    ]
    produce(bootstrap, names.enriched, enriched)
    return now


def start_sidecar(broker, topology, names: Names, home: Path, url: str | None = None, **extra: str) -> SidecarProc:  # type: ignore[no-untyped-def]
    env = {**sidecar_env(broker, topology, names, **extra), **topology.env, **({"REDIS_URL": url} if url else {})}
    return SidecarProc(home, env).start()


def assert_exact(proc: SidecarProc, names: Names) -> Samples:
    m = wait_until(lambda: _folded(proc, names), 60, what="every record folded")
    assert series(m, "ecomind_events_ingested_total") == {
        frozenset({("org_id", "org_a"), ("provider", "openai")}): 3.0,
        frozenset({("org_id", "org_b"), ("provider", "openai")}): 2.0,
        frozenset({("org_id", "org_c"), ("provider", "openai")}): 2.0,
    }
    assert value(m, "ecomind_daily_active_orgs") == 3.0
    assert value(m, "ecomind_daily_active_users") == 5.0
    assert value(m, "ecomind_total_kwh_today", org_id="org_a") == pytest.approx(0.25, abs=1e-12)
    assert value(m, "ecomind_total_kwh_today", org_id="org_b") == pytest.approx(1.5, abs=1e-12)
    assert value(m, "ecomind_total_co2_kg_today", org_id="org_b") == pytest.approx(0.5, abs=1e-12)
    assert value(m, "ecomind_streams_events_processed_total", topic=names.enriched) == 2.0
    assert value(m, "ecomind_streams_redis_up") == 1.0
    assert value(m, "ecomind_streams_redis_eviction_policy_ok") == 1.0
    assert value(m, "ecomind_streams_ready") == 1.0
    return m


def _folded(proc: SidecarProc, names: Names) -> Samples | None:
    m = proc.scrape()
    raw = value(m, "ecomind_streams_events_processed_total", topic=names.raw)
    enriched = value(m, "ecomind_streams_events_processed_total", topic=names.enriched)
    return m if (raw, enriched) == (7.0, 2.0) else None


def assert_policy_refused(proc: SidecarProc, primary: redis.Redis, shown: str) -> None:
    """volatile-lru (the big clouds' default) on `primary`: not ready, the reason naming it; ready again
    once it is noeviction."""
    primary.config_set("maxmemory-policy", "volatile-lru")
    try:
        body = wait_until(lambda: _not_ready(proc), 30, what="not ready on volatile-lru")
        check = next(c for c in orjson.loads(body)["checks"] if c["name"] == "redis_eviction_policy_ok")
        assert shown in check["reason"] and "set it to noeviction" in check["reason"], check
    finally:
        primary.config_set("maxmemory-policy", "noeviction")
    proc.wait_ready(30)


def _not_ready(proc: SidecarProc) -> bytes | None:
    status, body = proc.get("/ready")
    return body if status == 503 and b"volatile-lru" in body else None


def assert_unreachable(proc: SidecarProc, logged: str) -> None:
    """Serving, not ready, Redis unreachable, and the log saying why (soon: no hang)."""
    proc.wait_until_serving()
    wait_until(lambda: logged in proc.log_tail(200_000), 30, what=f"{logged!r} in the log")
    status, body = proc.get("/ready")
    ready = orjson.loads(body)
    assert status == 503 and ready["redis_reachable"] is False, ready
