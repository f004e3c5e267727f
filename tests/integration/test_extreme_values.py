"""Accepted values at their limits, through the real worker: totals stay exact (no overflow, no float
drift), and values just past the limits are rejected and counted, never folded."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from core.schema import MAX_CO2_KG, MAX_KWH, MAX_TOKENS
from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import raw_event
from tests.integration.conftest import Names, sidecar_env
from tests.integration.kafka_io import Out, produce

pytestmark = pytest.mark.integration
N = 3_000  # events at the limits, in many batches


def test_values_at_their_limits_sum_exactly(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    now_ms = int(time.time() * 1000)
    extreme = {"tokens_in": MAX_TOKENS, "tokens_out": MAX_TOKENS}
    raws = [raw_event("whale", f"u{i}", now_ms - i, **extreme) for i in range(N)]
    enriched = [orjson.dumps({**orjson.loads(r), "kwh": MAX_KWH, "co2_kg": MAX_CO2_KG}) for r in raws]
    past = [
        orjson.dumps({**orjson.loads(raws[0]), "kwh": MAX_KWH * 1.000001, "co2_kg": 1.0}),
        orjson.dumps({**orjson.loads(raws[0]), "kwh": 1.0, "co2_kg": 1e308}),
        orjson.dumps({**orjson.loads(raws[0]), "kwh": 1.0, "co2_kg": 1.0, "tokens_in": MAX_TOKENS + 1}),
    ]
    produce(broker.bootstrap, names.raw, [Out(v) for v in raws])
    produce(broker.bootstrap, names.enriched, [Out(v) for v in enriched + past])
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="500")
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()

        def folded() -> Samples | None:
            m = proc.scrape()
            done = value(m, "ecomind_streams_events_processed_total", topic=names.enriched) == N
            return m if done and value(m, "ecomind_streams_events_processed_total", topic=names.raw) == N else None

        m = wait_until(folded, 120, what="every event at its limit folded")
        assert value(m, "ecomind_total_kwh_today", org_id="whale") == N * MAX_KWH
        assert value(m, "ecomind_total_co2_kg_today", org_id="whale") == N * MAX_CO2_KG
        for direction in ("in", "out"):
            assert value(m, "ecomind_tokens_today", org_id="whale", direction=direction) == N * MAX_TOKENS
        rejected = {
            dict(labels)["reason"]: n
            for labels, n in series(m, "ecomind_streams_events_invalid_total").items()
            if dict(labels)["topic"] == names.enriched
        }
        assert sum(rejected.values()) == len(past), f"values past the limits must be rejected: {rejected}"
    finally:
        proc.stop()
