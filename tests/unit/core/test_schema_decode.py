"""The msgspec schemas only accept what the full checks accept, with the same values.

`raw_tuple` / `enriched_tuple` (core/decode.py: the tier-1 decode, the fold's too) try the schema first
and fall back to orjson plus the per-field checks (the reference) on any refusal. A fallback is only
slower; a schema that accepted what the reference refuses, or decoded a value differently, would count
a bad event or miscount a good one. So every generated payload, valid or not, must get the same answer
from both.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.decode import raw_tuple
from core.schema import ENRICHED_DECODER, MAX_CO2_KG, MAX_KWH, MAX_LABEL_CHARS, MAX_TOKENS, RAW_DECODER
from streams.local.workload import build
from tests.unit.core.event_strategies import (
    BOUNDARY_CASES,
    ENRICHED_FIELDS,
    FUTURE_MS,
    LIMITS,
    NOW_MS,
    RAW_FIELDS,
    fast_enriched,
    fast_raw,
    one_field_wrong,
    outcome,
    payloads,
    reference_enriched,
    reference_raw,
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(payloads(RAW_FIELDS), one_field_wrong(RAW_FIELDS)), LIMITS)
def test_raw_schema_agrees_with_the_checks(payload: bytes, max_bytes: int) -> None:
    assert outcome(fast_raw, payload, max_bytes) == outcome(reference_raw, payload, max_bytes)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(payloads(ENRICHED_FIELDS), one_field_wrong(ENRICHED_FIELDS)), LIMITS)
def test_enriched_schema_agrees_with_the_checks(payload: bytes, max_bytes: int) -> None:
    assert outcome(fast_enriched, payload, max_bytes) == outcome(reference_enriched, payload, max_bytes)


@pytest.mark.parametrize("payload", [None, b"", b"null", b"{}", b"\xff\xfe", b"[1]", b'{"ts":1e400}'])
def test_degenerate_payloads_get_the_references_reason(payload: bytes | None) -> None:
    assert outcome(fast_raw, payload, 65_536) == outcome(reference_raw, payload, 65_536)
    assert outcome(fast_enriched, payload, 65_536) == outcome(reference_enriched, payload, 65_536)


def test_the_common_events_take_the_schema_path() -> None:
    # Without this, a schema that refused everything would pass the tests above and only be slow.
    raws, enriched, _ = build(7, 500, 2, home_org=True)
    for payload in raws:
        RAW_DECODER.decode(payload)
    for payload in enriched:
        ENRICHED_DECODER.decode(payload)
    iso = json.dumps({**json.loads(raws[0]), "ts": "2026-11-27T11:00:00Z"}).encode()
    assert raw_tuple(iso, NOW_MS, FUTURE_MS, 65_536)[6] == NOW_MS - 3_600_000
    assert RAW_DECODER.decode(iso).ts == "2026-11-27T11:00:00Z"


def test_a_random_mix_of_good_events_decodes_like_the_reference() -> None:
    rng = random.Random(5)
    raws, enriched, _ = build(11, 2000, 1, spread=0.3)
    now_ms = int(time.time() * 1000)
    answers = []
    for payload in rng.sample(raws, 500):
        answers.append(outcome(fast_raw, payload, 65_536, now_ms))
        assert answers[-1] == outcome(reference_raw, payload, 65_536, now_ms)
    for payload in rng.sample(enriched, 500):
        assert outcome(fast_enriched, payload, 65_536, now_ms) == outcome(reference_enriched, payload, 65_536, now_ms)
    assert sum(answer[0] == "ok" for answer in answers) > 400  # the mix is mostly valid (a few dated ahead)


@pytest.mark.parametrize(("kind", "name", "value"), BOUNDARY_CASES)
def test_each_bound_of_each_field(kind: str, name: str, value: object) -> None:
    """Every field at and past each of its bounds, the rest valid: the table that pins the schema's
    bounds to the checks' (the search above covers the combinations)."""
    body: dict[str, object] = {
        "org_id": "org_a",
        "user_id": "u1",
        "provider": "openai",
        "model": "gpt-4o",
        "tokens_in": 10,
        "tokens_out": 5,
        "ts": NOW_MS - 1000,
    }
    if kind == "enriched":
        body |= {"kwh": 0.5, "co2_kg": 0.2}
    body[name] = value
    payload = json.dumps(body, ensure_ascii=False).encode()
    fast, reference = (fast_raw, reference_raw) if kind == "raw" else (fast_enriched, reference_enriched)
    assert outcome(fast, payload, 65_536) == outcome(reference, payload, 65_536)


def test_values_at_the_bounds_take_the_schema_path() -> None:
    """A schema bound stricter than the contract would only send good events to the slow path: the
    answers stay right, so the tests above cannot see it. The largest and smallest valid values must
    decode by the schema."""
    at_bounds = {
        "org_id": "😀" * MAX_LABEL_CHARS,
        "user_id": "a" * MAX_LABEL_CHARS,
        "provider": "p",
        "model": "m",
        "tokens_in": MAX_TOKENS,
        "tokens_out": 0,
        "ts": 946_684_800_000,
    }
    for value in (at_bounds, {**at_bounds, "tokens_in": 0, "tokens_out": MAX_TOKENS, "ts": NOW_MS + FUTURE_MS}):
        payload = json.dumps(value, ensure_ascii=False).encode()
        assert RAW_DECODER.decode(payload).tokens_in == value["tokens_in"]
        assert raw_tuple(payload, NOW_MS, FUTURE_MS, 65_536)[6] == value["ts"]
        for kwh, co2 in ((MAX_KWH, MAX_CO2_KG), (0, 0.0)):
            enriched = json.dumps({**value, "kwh": kwh, "co2_kg": co2}, ensure_ascii=False).encode()
            decoded = ENRICHED_DECODER.decode(enriched)
            assert (decoded.kwh, decoded.co2_kg) == (kwh, co2)
