"""100,000 distinct org_id values in a day: series stay capped, totals exact, memory and /metrics bounded."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tables.delta import NANO
from tables.labels import OTHER
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import Out, produce

pytestmark = pytest.mark.integration

ORGS = 100_000
CAP = 200


def test_cardinality_attack_is_capped_and_exact(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    now_ms = int(time.time() * 1000)
    # A few real customers with steady traffic, then an attacker's flood of one-off org ids.
    real = [f"customer-{n}" for n in range(20)]
    raw = [raw_event(org, f"u{n}", now_ms) for n in range(2_000) for org in [real[n % len(real)]]]
    raw += [raw_event(f"attack-{n:06d}", "bot", now_ms) for n in range(ORGS)]
    kwh_nano = 0
    enriched = []
    for n in range(0, ORGS, 10):
        ev = {**orjson.loads(raw[2_000 + n]), "kwh": 0.000123, "co2_kg": 0.0000615}
        enriched.append(Out(orjson.dumps(ev)))
        kwh_nano += round(0.000123 * NANO)
    proc = SidecarProc(
        workdir / names.app_id, sidecar_env(broker, redis_server, names, STREAMS_MAX_ORG_SERIES=str(CAP))
    ).start()
    try:
        proc.wait_ready()
        produce(broker.bootstrap, names.raw, [Out(r) for r in raw[:2_000]])
        # The real customers are seen first, so they hold series before the flood arrives.
        wait_until(lambda: _processed(proc.scrape(), names.raw) >= 2_000, 60, what="customers folded")
        produce(broker.bootstrap, names.raw, [Out(r) for r in raw[2_000:]])
        produce(broker.bootstrap, names.enriched, enriched)
        final = wait_until(lambda: _done(proc, names, len(raw), len(enriched)), 180, what="the flood folded")
        total_orgs = len(real) + ORGS
        assert value(final, "ecomind_daily_active_orgs") == float(total_orgs)
        ingested = series(final, "ecomind_events_ingested_total")
        orgs_labelled = {dict(k)["org_id"] for k in ingested}
        assert len(orgs_labelled) <= CAP + 1 and OTHER in orgs_labelled
        assert set(real) <= orgs_labelled, "customers seen before the flood keep their series"
        assert sum(ingested.values()) == float(len(raw))
        assert sum(series(final, "ecomind_api_calls_total").values()) == float(len(raw))
        kwh = series(final, "ecomind_total_kwh_today")
        assert len(kwh) <= CAP + 1
        assert round(sum(kwh.values()) * NANO) == kwh_nano
        assert value(final, "ecomind_streams_label_values_folded_total", label="org_id") == float(total_orgs - CAP)
        body = proc.get("/metrics")[1]
        assert len(body) < 200_000, f"/metrics is {len(body)} bytes"
        promtool_accepts(body)
        rss = value(final, "process_resident_memory_bytes") or 0
        assert 0 < rss < 250 * 2**20, f"sidecar RSS {rss / 2**20:.0f} MiB"
    finally:
        proc.stop()


def _processed(m: Samples, topic: str) -> float:
    return value(m, "ecomind_streams_events_processed_total", topic=topic) or 0.0


def _done(proc: SidecarProc, names: Names, raw: int, enriched: int) -> Samples | None:
    m = proc.scrape()
    return m if _processed(m, names.raw) >= raw and _processed(m, names.enriched) >= enriched else None
