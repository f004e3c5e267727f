import pytest

from core.decode import parse_enriched, parse_raw
from core.events import (
    BAD_TIMESTAMP,
    MISSING_FIELD,
    NEGATIVE_VALUE,
    NON_FINITE,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    OUT_OF_RANGE,
    REASONS,
    TOO_LARGE,
    WRONG_TYPE,
    Invalid,
    parse_ts_ms,
)
from streams.local.workload import raw_event, without

NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z
DAY_MS = 86_400_000
GOOD = (
    b'{"org_id":"org_a","user_id":"u1","provider":"openai","model":"gpt-4o",'
    b'"tokens_in":10,"tokens_out":5,"ts":"2026-11-27T11:00:00Z"}'
)


def raw(**fields: object) -> bytes:
    """A valid raw event an hour before NOW_MS, with fields added or overridden."""
    return raw_event("org_a", "u1", NOW_MS - 3_600_000, **fields)


def enriched(**fields: object) -> bytes:
    """A valid enriched event, with fields added or overridden."""
    return raw(**{"kwh": 0.5, "co2_kg": 0.2, **fields})


def test_valid_raw_event_parses_every_field() -> None:
    ev = parse_raw(GOOD + b"", NOW_MS, DAY_MS, 65536)
    assert ev.org_id == "org_a" and ev.user_id == "u1" and ev.model == "gpt-4o"
    assert (ev.tokens_in, ev.tokens_out) == (10, 5)
    assert ev.ts_ms == NOW_MS - 3_600_000


def test_unknown_fields_are_ignored() -> None:
    assert parse_raw(raw(extra={"deep": [1, 2]}), NOW_MS, DAY_MS, 65536).org_id == "org_a"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", NOT_UTF8),
        (b"{not json", NOT_JSON),
        (b"", NOT_JSON),
        (None, NOT_JSON),
        (b'{"org_id": NaN}', NON_FINITE),
        (b'{"tokens_in": 1e400}', NON_FINITE),
        (b"[1, 2]", NOT_OBJECT),
        (b'"text"', NOT_OBJECT),
        (without(raw(), "org_id"), MISSING_FIELD),
        (raw(org_id=""), MISSING_FIELD),
        (raw(org_id=None), MISSING_FIELD),
        (raw(org_id=5), WRONG_TYPE),
        (raw(tokens_in="10"), WRONG_TYPE),
        (raw(tokens_in=True), WRONG_TYPE),
        (raw(tokens_in=1.5), WRONG_TYPE),
        (raw(tokens_out=-1), NEGATIVE_VALUE),
        (raw(tokens_out=10**12), OUT_OF_RANGE),
        (raw(org_id="x" * 300), OUT_OF_RANGE),
        (raw(ts="yesterday"), BAD_TIMESTAMP),
        (raw(ts="1999-12-31T23:59:59Z"), BAD_TIMESTAMP),
        (raw(ts=946_684_799_999), BAD_TIMESTAMP),  # epoch ms, 1 ms before 2000 (found through the worker)
        (raw(ts=100_000_000_000), BAD_TIMESTAMP),  # the smallest number read as milliseconds: 1973
        (raw(ts=NOW_MS + 2 * DAY_MS), BAD_TIMESTAMP),
        (raw(ts=[1]), WRONG_TYPE),
        (b'{"pad": "' + b"x" * 70_000 + b'"}', TOO_LARGE),
    ],
)
def test_invalid_raw_records_get_their_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_raw(payload, NOW_MS, DAY_MS, 65536)
    assert caught.value.reason == reason
    assert reason in REASONS


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (without(enriched(), "kwh"), MISSING_FIELD),
        (enriched(kwh="0.1"), WRONG_TYPE),
        (enriched(kwh=-0.1), NEGATIVE_VALUE),
        (enriched(co2_kg=1e9), OUT_OF_RANGE),
        (enriched(co2_kg=False), WRONG_TYPE),
    ],
)
def test_invalid_enriched_amounts(payload: bytes, reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_enriched(payload, NOW_MS, DAY_MS, 65536)
    assert caught.value.reason == reason


def test_enriched_event_keeps_amounts_and_optional_event_id() -> None:
    ev = parse_enriched(raw(kwh=0.25, co2_kg=1, event_id="e-1"), NOW_MS, DAY_MS, 65536)
    assert (ev.kwh, ev.co2_kg, ev.raw.org_id) == (0.25, 1.0, "org_a")


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        ("2026-11-27T11:00:00Z", NOW_MS - 3_600_000),
        ("2026-11-27T11:00:00.123Z", NOW_MS - 3_600_000 + 123),
        ("2026-11-27T12:00:00+01:00", NOW_MS - 3_600_000),
        ("2026-11-27T06:30:00-05:30", NOW_MS),
        ("2026-11-27T12:00:00", NOW_MS),
        (1_795_780_800, NOW_MS),
        (1_795_780_800.5, NOW_MS + 500),
        (1_795_780_800_000, NOW_MS),
    ],
)
def test_timestamps_in_every_accepted_form(ts: object, expected_ms: int) -> None:
    assert parse_ts_ms(ts, NOW_MS, DAY_MS) == expected_ms
