"""Known events in, exact metrics out: every business, pipeline and lag metric on a real broker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


# 3 shards over 2 partitions: shard 2 holds members only (docs/design.md, "Sharded state"); one Redis holds
# the three hash tags, which a cluster would spread (tests/integration/test_redis_cluster_shards.py).
@pytest.mark.parametrize("shards", [1, 3])
def test_every_metric_has_its_exact_value(broker, redis_server, names: Names, workdir: Path, shards: int) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    now = int(time.time() * 1000)
    old = now - 120_000  # record time of the first records on partition 0: their age is the lag
    a1_ts = now - 1000  # org_a's first event, which the enriched records below continue
    claude = {"provider": "anthropic", "model": "claude"}
    raws = [
        Out(raw_event("org_a", "u1", a1_ts), 0, old),
        Out(raw_event("org_a", "u2", now - 900), 0, old),
        Out(raw_event("org_a", "u1", now - 800, model="gpt-4o-mini"), 0, old + 1),
        Out(raw_event("org_b", "u1", now - 700, **claude), 0, now - 500),
        Out(raw_event("org_b", "u1", now - 600, **claude), 1, now - 400),
        Out(raw_event("org_c", "u9", now - 3 * DAY_MS), 1, now - 300),
        Out(b"{not json", 1, now - 200),
        Out(raw_event("org_a", "u1", a1_ts, user_id=None), 1, now - 200),
        Out(raw_event("org_a", "u1", a1_ts, tokens_in=-3), 1, now - 200),
        Out(raw_event("org_a", "u1", a1_ts, ts="never"), 1, now - 100),
    ]
    produce(broker.bootstrap, names.raw, raws)
    enriched = [
        Out(raw_event("org_a", "u1", a1_ts, kwh=0.1, co2_kg=0.05), 0, a1_ts + 200),
        Out(raw_event("org_a", "u1", a1_ts, kwh=0.2, co2_kg=0.1, event_id="e2"), 0, a1_ts + 3000),
        Out(raw_event("org_b", "u1", now - 600, kwh=1.5, co2_kg=0.6, **claude), 1, now - 600 + 20_000),
        Out(raw_event("org_a", "u1", a1_ts, kwh="lots", co2_kg=1), 1, now),
    ]
    produce(broker.bootstrap, names.enriched, enriched)
    commit_group(broker.bootstrap, names.watch_group, names.raw, {0: 2})

    env = sidecar_env(broker, redis_server, names, STREAMS_REDIS_SHARDS=str(shards))
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        m = wait_until(lambda: _caught_up(proc), 60, what="all records folded")
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        stored: list[str] = client.keys(f"{{{names.app_id}*")  # type: ignore[assignment]
        # The exporter lease and the layout marker stay under the app's own tag (`{app}:v3:leader`).
        tags = {key.split("}")[0] + "}" for key in stored if ":v3:" in key and not key.endswith(":v3:leader")}
        want = {f"{{{names.app_id}}}"} if shards == 1 else {f"{{{names.app_id}:s{k}}}" for k in range(shards)}
        assert tags == want
        assert series(m, "ecomind_events_ingested_total") == {
            frozenset({("org_id", "org_a"), ("provider", "openai")}): 3.0,
            frozenset({("org_id", "org_b"), ("provider", "anthropic")}): 2.0,
            frozenset({("org_id", "org_c"), ("provider", "openai")}): 1.0,
        }
        assert series(m, "ecomind_api_calls_total") == {
            frozenset({("org_id", "org_a"), ("model", "gpt-4o")}): 2.0,
            frozenset({("org_id", "org_a"), ("model", "gpt-4o-mini")}): 1.0,
            frozenset({("org_id", "org_b"), ("model", "claude")}): 2.0,
            frozenset({("org_id", "org_c"), ("model", "gpt-4o")}): 1.0,
        }
        assert value(m, "ecomind_daily_active_orgs") == 2.0
        assert value(m, "ecomind_daily_active_users") == 3.0
        assert value(m, "ecomind_total_kwh_today", org_id="org_a") == pytest.approx(0.3, abs=1e-12)
        assert value(m, "ecomind_total_kwh_today", org_id="org_b") == pytest.approx(1.5, abs=1e-12)
        assert value(m, "ecomind_total_co2_kg_today", org_id="org_a") == pytest.approx(0.15, abs=1e-12)
        assert value(m, "ecomind_total_co2_kg_today", org_id="org_b") == pytest.approx(0.6, abs=1e-12)
        assert series(m, "ecomind_streams_events_invalid_total") == {
            frozenset({("topic", names.raw), ("reason", "not_json")}): 1.0,
            frozenset({("topic", names.raw), ("reason", "missing_field")}): 1.0,
            frozenset({("topic", names.raw), ("reason", "negative_value")}): 1.0,
            frozenset({("topic", names.raw), ("reason", "bad_timestamp")}): 1.0,
            frozenset({("topic", names.enriched), ("reason", "wrong_type")}): 1.0,
        }
        assert value(m, "ecomind_streams_events_processed_total", topic=names.raw) == 6.0
        assert value(m, "ecomind_streams_events_processed_total", topic=names.enriched) == 3.0
        assert value(m, "ecomind_streams_events_dropped_late_total", topic=names.raw) == 1.0
        assert value(m, "ecomind_streams_last_event_timestamp_seconds", topic=names.raw) == (now - 100) / 1000
        delay = "ecomind_streams_enrichment_delay_seconds"
        assert value(m, f"{delay}_count") == 3.0
        assert value(m, f"{delay}_sum") == pytest.approx(23.2)
        assert value(m, f"{delay}_bucket", le="0.1") == 0.0
        assert value(m, f"{delay}_bucket", le="0.25") == 1.0
        assert value(m, f"{delay}_bucket", le="5.0") == 2.0
        assert value(m, f"{delay}_bucket", le="10.0") == 2.0
        assert value(m, f"{delay}_bucket", le="30.0") == 3.0
        assert value(m, "ecomind_streams_tables_recovering") == 0.0
        assert value(m, "ecomind_streams_ready") == 1.0

        # Lag: partition 0 committed at 2 of 4, its first unconsumed record is 120 s old;
        # partition 1 has no commit at all and is reported as such, with all 6 records unread.
        lag = wait_until(lambda: _lag(proc, names.raw), 30, what="lag figures")
        assert lag["0"][:2] == (2.0, 1.0)
        age_0, age_1 = lag["0"][2], lag["1"][2]
        assert age_0 is not None and 119.0 <= age_0 <= 180.0
        assert lag["1"][:2] == (6.0, 0.0)
        assert age_1 is not None and 0.0 < age_1 <= 60.0

        commit_group(broker.bootstrap, names.watch_group, names.raw, {0: 4, 1: 6})
        wait_until(
            lambda: _lag(proc, names.raw) == {"0": (0.0, 1.0, 0.0), "1": (0.0, 1.0, 0.0)},
            30,
            what="lag back to zero once the worker caught up",
        )

        promtool_accepts(proc.get("/metrics")[1])
        assert proc.get("/health")[0] == 200
        status, body = proc.get("/ready")
        assert status == 200 and orjson.loads(body)["tables_recovered"] is True
        assert _synthetic(proc.url).returncode == 0
    finally:
        proc.stop()
    stopped = _synthetic(proc.url)
    assert stopped.returncode == 1 and "unreachable" in stopped.stderr


def _caught_up(proc: SidecarProc) -> dict | None:  # type: ignore[type-arg]
    m = proc.scrape()
    raw_done = sum(v for (n, _), v in m.items() if n == "ecomind_streams_events_processed_total") == 9.0
    invalid = sum(v for (n, _), v in m.items() if n == "ecomind_streams_events_invalid_total") == 5.0
    return m if raw_done and invalid else None


def _lag(proc: SidecarProc, topic: str) -> dict[str, tuple[float, float | None, float | None]] | None:
    m = proc.scrape()
    out = {}
    for labels, lag in series(m, "ecomind_worker_kafka_lag").items():
        d = dict(labels)
        assert d["topic"] == topic
        p = d["partition"]
        committed = value(m, "ecomind_streams_watch_group_committed", topic=topic, partition=p)
        seconds = value(m, "ecomind_worker_kafka_lag_seconds", topic=topic, partition=p)
        out[p] = (lag, committed, seconds)
    return out or None


def test_label_cap_folds_extra_orgs_into_other_and_keeps_sums(
    broker, redis_server, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    now = int(time.time() * 1000)
    # Activity decides who gets a series while there is room: org_0 (5 events) and org_1 (4) do.
    counts = {"org_0": 5, "org_1": 4, "org_2": 3, "org_3": 2, "org_4": 1}
    raws = [Out(raw_event(o, f"u{i}", now)) for o, n in counts.items() for i in range(n)]
    enriched = [Out(raw_event(o, "u", now, kwh=0.5, co2_kg=0.25)) for o in counts]
    produce(broker.bootstrap, names.raw, raws)
    produce(broker.bootstrap, names.enriched, enriched)
    env = sidecar_env(broker, redis_server, names, STREAMS_MAX_ORG_SERIES="2")
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()
        m = wait_until(lambda: _when_processed(proc, 20.0), 60, what="all folded")
        assert series(m, "ecomind_events_ingested_total") == {
            frozenset({("org_id", "org_0"), ("provider", "openai")}): 5.0,
            frozenset({("org_id", "org_1"), ("provider", "openai")}): 4.0,
            frozenset({("org_id", "__other__"), ("provider", "openai")}): 6.0,
        }
        kwh = series(m, "ecomind_total_kwh_today")
        assert kwh == {frozenset({("org_id", o)}): v for o, v in (("org_0", 0.5), ("org_1", 0.5), ("__other__", 1.5))}
        assert value(m, "ecomind_streams_label_values_folded_total", label="org_id") == 3.0
        assert value(m, "ecomind_daily_active_orgs") == 5.0
        promtool_accepts(proc.get("/metrics")[1])
    finally:
        proc.stop()


def _when_processed(proc: SidecarProc, events: float) -> Samples | None:
    m = proc.scrape()
    done = sum(v for (n, _), v in m.items() if n == "ecomind_streams_events_processed_total")
    return m if done == events else None


def _synthetic(base_url: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).resolve().parents[2] / "ops" / "synthetic" / "check_sidecar.py"
    return subprocess.run([sys.executable, str(script), base_url], capture_output=True, text=True, timeout=30)
